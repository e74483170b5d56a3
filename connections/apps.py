from django.apps import AppConfig


class ConnectionsConfig(AppConfig):
    """Outgoing connections (Vault today; REST, FHIR, LDAP, SFTP, FTP next), and Vault's security type."""

    name = "connections"
    verbose_name = "Outgoing connections"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from connections import base
        from connections.api import VaultViewSet
        from connections.vault import KIND, VaultClient
        from connections.vault_inbound import VaultAuthentication
        from integration import api_routes
        from integration.channels import security

        # A Vault connection is both: a security definition for channels, a client for services.
        security.register(security.SecurityType("vault_conn_sec", "Vault", "connections.VaultConnection",
                                                VaultAuthentication.from_definition))
        base.register(base.ConnectionType(KIND, "Vault", "connections.VaultConnection", VaultClient.from_definition))
        api_routes.register("security/vault", VaultViewSet, basename="vault")
        _register_directory_connections()


def _register_directory_connections() -> None:
    """LDAP / Active Directory, SFTP and FTP: connection types and their management API resources."""
    from connections import base
    from connections.directory_api import FtpViewSet, LdapViewSet, SftpViewSet
    from connections.ftp import KIND as FTP
    from connections.ftp import FtpClient
    from connections.ldap import KIND as LDAP
    from connections.ldap import LdapClient
    from connections.sftp import KIND as SFTP
    from connections.sftp import SftpClient
    from integration import api_routes

    base.register(base.ConnectionType(LDAP, "LDAP", "connections.LdapConnection", LdapClient.from_definition))
    base.register(base.ConnectionType(SFTP, "SFTP", "connections.SftpConnection", SftpClient.from_definition))
    base.register(base.ConnectionType(FTP, "FTP", "connections.FtpConnection", FtpClient.from_definition))
    api_routes.register("outgoing/ldap", LdapViewSet, basename="outgoing-ldap")
    api_routes.register("outgoing/sftp", SftpViewSet, basename="outgoing-sftp")
    api_routes.register("outgoing/ftp", FtpViewSet, basename="outgoing-ftp")

from django.apps import AppConfig


class ConnectionsConfig(AppConfig):
    """Outgoing connections (Vault, REST, HL7 FHIR, AMQP; LDAP, SFTP, FTP next), and Vault's security type."""

    name = "connections"
    verbose_name = "Outgoing connections"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from connections import amqp, base, fhir, rest
        from connections.api import (
            AMQPBrokerViewSet,
            OutgoingAMQPViewSet,
            OutgoingFhirViewSet,
            OutgoingRestViewSet,
            VaultViewSet,
        )
        from connections.http_common import fingerprint
        from connections.vault import KIND, VaultClient
        from connections.vault_inbound import VaultAuthentication
        from integration import api_routes
        from integration.channels import security

        # A Vault connection is both: a security definition for channels, a client for services.
        security.register(security.SecurityType("vault_conn_sec", "Vault", "connections.VaultConnection",
                                                VaultAuthentication.from_definition))
        base.register(base.ConnectionType(KIND, "Vault", "connections.VaultConnection", VaultClient.from_definition))
        # Outgoing REST (alias plain_http, Zato's name) and HL7 FHIR.
        base.register(base.ConnectionType(rest.KIND, "REST", "connections.OutgoingRest", rest.RestConnection.from_row,
                                          aliases=rest.ALIASES, fingerprint=fingerprint))
        base.register(base.ConnectionType(fhir.KIND, "HL7 FHIR", "connections.OutgoingFhir",
                                          fhir.FhirConnection.from_row, fingerprint=fingerprint))
        base.register(base.ConnectionType(amqp.KIND, "AMQP", "connections.OutgoingAMQP",
                                          amqp.OutgoingAMQPConnection.from_row,
                                          fingerprint=amqp.OutgoingAMQPConnection.fingerprint,
                                          kind_api=amqp.OutgoingAMQP))
        api_routes.register("security/vault", VaultViewSet, basename="vault")
        api_routes.register("outgoing/rest", OutgoingRestViewSet, basename="outgoing-rest")
        api_routes.register("outgoing/fhir", OutgoingFhirViewSet, basename="outgoing-fhir")
        api_routes.register("connections/amqp", AMQPBrokerViewSet, basename="amqp-broker")
        api_routes.register("outgoing/amqp", OutgoingAMQPViewSet, basename="outgoing-amqp")
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

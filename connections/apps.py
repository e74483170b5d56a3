from django.apps import AppConfig


class ConnectionsConfig(AppConfig):
    """Outgoing connections (Vault, REST, HL7 FHIR, AMQP, LDAP, SFTP, FTP), and Vault's security type.

    Kinds whose client library is heavy to import (fhirpy, ldap3, paramiko) are registered by the
    dotted path of their build function: it is imported when a row of that kind is first compiled,
    not in every process's start-up (``connections.base.builder``).
    """

    name = "connections"
    verbose_name = "Outgoing connections"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from connections import amqp, base, rest
        from connections.api import (
            AMQPBrokerViewSet,
            OutgoingAMQPViewSet,
            OutgoingFhirViewSet,
            OutgoingRestViewSet,
            VaultViewSet,
        )
        from connections.directory_api import FtpViewSet, LdapViewSet, SftpViewSet
        from connections.http_common import fingerprint
        from connections.vault import KIND, VaultClient
        from connections.vault_inbound import VaultAuthentication
        from integration import api_routes
        from integration.channels import security

        # A Vault connection is both: a security definition for channels, a client for services.
        security.register(security.SecurityType("vault_conn_sec", "Vault", "connections.VaultConnection",
                                                VaultAuthentication.from_definition))
        register = base.register
        register(base.ConnectionType(KIND, "Vault", "connections.VaultConnection", VaultClient.from_definition))
        # Outgoing REST (alias plain_http, Zato's name) and HL7 FHIR.
        register(base.ConnectionType(rest.KIND, "REST", "connections.OutgoingRest", rest.RestConnection.from_row,
                                     aliases=rest.ALIASES, fingerprint=fingerprint))
        register(base.ConnectionType("hl7.fhir", "HL7 FHIR", "connections.OutgoingFhir",
                                     "connections.fhir:FhirConnection.from_row", fingerprint=fingerprint))
        register(base.ConnectionType(amqp.KIND, "AMQP", "connections.OutgoingAMQP",
                                     amqp.OutgoingAMQPConnection.from_row,
                                     fingerprint=amqp.OutgoingAMQPConnection.fingerprint, kind_api=amqp.OutgoingAMQP))
        # LDAP / Active Directory, SFTP and FTP.
        register(base.ConnectionType("ldap", "LDAP", "connections.LdapConnection",
                                     "connections.ldap:LdapClient.from_definition"))
        register(base.ConnectionType("sftp", "SFTP", "connections.SftpConnection",
                                     "connections.sftp:SftpClient.from_definition"))
        register(base.ConnectionType("ftp", "FTP", "connections.FtpConnection",
                                     "connections.ftp:FtpClient.from_definition"))
        api_routes.register("security/vault", VaultViewSet, basename="vault")
        api_routes.register("outgoing/rest", OutgoingRestViewSet, basename="outgoing-rest")
        api_routes.register("outgoing/fhir", OutgoingFhirViewSet, basename="outgoing-fhir")
        api_routes.register("connections/amqp", AMQPBrokerViewSet, basename="amqp-broker")
        api_routes.register("outgoing/amqp", OutgoingAMQPViewSet, basename="outgoing-amqp")
        api_routes.register("outgoing/ldap", LdapViewSet, basename="outgoing-ldap")
        api_routes.register("outgoing/sftp", SftpViewSet, basename="outgoing-sftp")
        api_routes.register("outgoing/ftp", FtpViewSet, basename="outgoing-ftp")

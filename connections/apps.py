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

        # Outgoing REST (alias plain_http, Zato's name) and HL7 FHIR.
        from connections import fhir, rest
        from connections.api import OutgoingFhirViewSet, OutgoingRestViewSet
        from connections.http_common import fingerprint

        base.register(base.ConnectionType(rest.KIND, "REST", "connections.OutgoingRest", rest.RestConnection.from_row,
                                          aliases=rest.ALIASES, fingerprint=fingerprint))
        base.register(base.ConnectionType(fhir.KIND, "HL7 FHIR", "connections.OutgoingFhir",
                                          fhir.FhirConnection.from_row, fingerprint=fingerprint))
        api_routes.register("outgoing/rest", OutgoingRestViewSet, basename="outgoing-rest")
        api_routes.register("outgoing/fhir", OutgoingFhirViewSet, basename="outgoing-fhir")

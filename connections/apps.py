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
        from connections.amqp import KIND as AMQP
        from connections.amqp import OutgoingAMQPConnection

        base.register(base.ConnectionType(AMQP, "AMQP", "connections.OutgoingAMQP", OutgoingAMQPConnection.from_row,
                                          fingerprint=OutgoingAMQPConnection.fingerprint))
        from connections.api import AMQPBrokerViewSet, OutgoingAMQPViewSet

        api_routes.register("connections/amqp", AMQPBrokerViewSet, basename="amqp-broker")
        api_routes.register("outgoing/amqp", OutgoingAMQPViewSet, basename="outgoing-amqp")

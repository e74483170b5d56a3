from django.apps import AppConfig


class ConnectionsConfig(AppConfig):
    """Outgoing connections (REST, FHIR, LDAP, SFTP, FTP, Vault); filled in by later issues."""

    name = "connections"
    verbose_name = "Outgoing connections"
    default_auto_field = "django.db.models.BigAutoField"

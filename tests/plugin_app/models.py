"""The test plug-in's rows: a security definition type and an outgoing connection type."""

from __future__ import annotations

from django.db import models

from accounts.models import SecurityDefinition
from integration.channels import security
from integration.signals import config_model


class ShoutDefinition(SecurityDefinition):
    """Callers shout a word in ``X-Shout`` (a WebSocket client sends it as its token)."""

    word = models.CharField(max_length=100)

    def save(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.sec_type = security.sec_type_of(type(self))
        super().save(*args, **kwargs)


@config_model
class EchoConnection(models.Model):
    """A "backend" that answers with what it is sent, behind a prefix."""

    name = models.CharField(max_length=200, unique=True)
    is_active = models.BooleanField(default=True)
    prefix = models.CharField(max_length=100, default="echo: ")

    def __str__(self) -> str:
        return self.name

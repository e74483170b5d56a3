"""``python manage.py deploy FILE...``: deploy service modules as the pickup directory would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from integration.deploy import deploy_paths
from integration.models import ServiceModule
from integration.registry import DeploymentError


class Command(BaseCommand):
    help = "Deploy Python files of services to every process of the platform."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("files", nargs="+", type=Path)

    def handle(self, *args: Any, files: list[Path], **options: Any) -> None:
        try:
            outcomes = deploy_paths(files, ServiceModule.Origin.CLI)
        except DeploymentError as exc:
            raise CommandError(str(exc)) from None
        failed = 0
        for outcome in outcomes:
            if outcome.ok:
                state = "deployed" if outcome.changed else "unchanged"
                self.stdout.write(f"{outcome.filename}: {state}: {', '.join(outcome.services) or '(no services)'}")
            else:
                failed += 1
                self.stderr.write(f"{outcome.filename}: rejected: {outcome.error}")
        if failed:
            raise CommandError(f"{failed} of {len(outcomes)} files rejected; the previous versions keep serving")

"""Deploying service source: check it, store it, tell every process.

``deploy_sources`` is the one function behind the pickup directory, ``manage.py deploy``,
the management API and the admin upload. It imports each file in this process first;
a file that does not import is rejected (logged, recorded on its module for the admin)
and the previously deployed version keeps serving. Accepted source is written to the
database with its services in one transaction that bumps the configuration version, so
every process loads the same code within a poll interval.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import ProtectedError
from django.utils import timezone

from integration.models import DeployedService, ServiceModule
from integration.registry import DeploymentError, LoadedModule, load_builtin, load_source, module_name_for, source_hash
from integration.signals import one_change

logger = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What happened to one file."""

    filename: str
    module: str = ""
    services: list[str] = field(default_factory=list)
    error: str = ""
    changed: bool = False

    @property
    def ok(self) -> bool:
        return not self.error


def deploy_sources(files: list[tuple[str, str]], origin: str = ServiceModule.Origin.PICKUP) -> list[Outcome]:
    """Deploy (filename, source) pairs; return an Outcome per file, in order."""
    outcomes: list[Outcome] = []
    accepted: list[tuple[Outcome, LoadedModule, str, str]] = []
    names = []
    for filename, _ in files:
        try:
            names.append(module_name_for(filename))
        except DeploymentError:
            names.append("")
    existing = {m.name: m for m in ServiceModule.objects.filter(name__in=[n for n in names if n])}
    owners = dict(DeployedService.objects.values_list("name", "module__name"))
    rejected: list[tuple[str, str, str, str]] = []

    for (filename, source), name in zip(files, names, strict=True):
        outcome = Outcome(filename, name)
        outcomes.append(outcome)
        digest = source_hash(source)
        row = existing.get(name)
        try:
            if not name:
                module_name_for(filename)  # raises with the reason
            if row is not None and row.origin == ServiceModule.Origin.BUILTIN:
                raise DeploymentError(f"`{name}` is the name of a built-in module and cannot be replaced")
            if row is not None and row.source_hash == digest and row.source:
                outcome.services = sorted(row.services.values_list("name", flat=True))
                continue  # unchanged: nothing to do
            if row is not None and row.rejected_hash == digest:
                outcome.error = row.last_error  # the same broken file again
                continue
            loaded = load_source(name, source, filename)
            for info in loaded.services:
                owner = owners.get(info.name)
                if owner is not None and owner != name:
                    raise DeploymentError(f"Service `{info.name}` is already deployed from module `{owner}`")
        except DeploymentError as exc:
            outcome.error = str(exc)
            rejected.append((name, filename, digest, outcome.error))
            logger.error("Deployment of %s rejected; the previous version (if any) keeps serving: %s",
                         filename, exc)
            continue
        outcome.services = [info.name for info in loaded.services]
        outcome.changed = True
        accepted.append((outcome, loaded, filename, source))

    with transaction.atomic(), one_change():
        now = timezone.now()
        for name, filename, digest, error in rejected:
            if not name:
                continue
            ServiceModule.objects.update_or_create(
                name=name,
                defaults={"last_error": error, "last_error_at": now, "rejected_hash": digest, "filename": filename},
                create_defaults={"last_error": error, "last_error_at": now, "rejected_hash": digest,
                                 "filename": filename, "origin": origin},
            )
        for outcome, loaded, filename, source in accepted:
            _store(loaded, filename, source, origin, now)
            logger.info("Deployed %d services from %s: %s", len(outcome.services), filename,
                        ", ".join(outcome.services) or "(none)")
    return outcomes


def _store(loaded: LoadedModule, filename: str, source: str, origin: str, now: object) -> None:
    module, _ = ServiceModule.objects.update_or_create(
        name=loaded.name,
        defaults={
            "filename": filename, "origin": origin, "source": source, "source_hash": loaded.source_hash,
            "deployed_at": now, "last_error": "", "last_error_at": None, "rejected_hash": "",
        },
    )
    wanted = {info.name: info.cls.__name__ for info in loaded.services}
    current = {svc.name: svc for svc in module.services.all()}
    new = [DeployedService(name=n, module=module, class_name=c, deployed_at=now)
           for n, c in wanted.items() if n not in current]
    DeployedService.objects.bulk_create(new)
    kept = [svc for name, svc in current.items() if name in wanted]
    for svc in kept:
        svc.class_name, svc.deployed_at = wanted[svc.name], now
    DeployedService.objects.bulk_update(kept, ["class_name", "deployed_at"])
    for name, svc in current.items():
        if name not in wanted:
            try:
                with transaction.atomic():
                    svc.delete()
            except ProtectedError:
                # Channels still point at it; invoking it answers "not deployed" until they change.
                logger.warning("Service %s is gone from %s but channels still use it", name, filename)


def deploy_paths(paths: list[Path], origin: str = ServiceModule.Origin.CLI) -> list[Outcome]:
    files = []
    for path in paths:
        try:
            files.append((str(path), Path(path).read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            raise DeploymentError(f"Cannot read {path}: {exc}") from None
    return deploy_sources(files, origin)


def sync_builtin() -> None:
    """Record the built-in modules and their services, so the admin and channels can see them."""
    now = timezone.now()
    with transaction.atomic(), one_change():
        for dotted in settings.BUILTIN_SERVICE_MODULES:
            loaded = load_builtin(dotted)
            row = ServiceModule.objects.filter(name=dotted).first()
            if row is not None and row.source_hash == loaded.source_hash:
                continue
            source = inspect.getsource(importlib.import_module(dotted))
            _store(loaded, dotted, source, ServiceModule.Origin.BUILTIN, now)


class PickupWatcher:
    """Deploys ``*.py`` files that appear or change in the pickup directory.

    Polled by every process's snapshot thread. A file is deployed once its size and
    modification time are the same on two scans in a row, so a file still being written
    is not deployed half-way. Deployment is idempotent (same source hash = no change), so
    several processes watching the same directory do no harm.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.seen: dict[str, tuple[int, int]] = {}
        self.pending: dict[str, tuple[int, int]] = {}

    def scan(self) -> list[Outcome]:
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return []
        ready: list[tuple[str, str]] = []
        for entry in entries:
            if not entry.name.endswith(".py") or entry.name.startswith(".") or not entry.is_file():
                continue
            stat = entry.stat()
            signature = (stat.st_mtime_ns, stat.st_size)
            if self.seen.get(entry.name) == signature:
                continue
            if self.pending.get(entry.name) != signature:
                self.pending[entry.name] = signature
                continue
            try:
                source = Path(entry.path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                logger.error("Cannot read %s from the pickup directory: %s", entry.path, exc)
                self.seen[entry.name] = signature
                continue
            ready.append((entry.path, source))
            self.seen[entry.name] = signature
            self.pending.pop(entry.name, None)
        return deploy_sources(ready, ServiceModule.Origin.PICKUP) if ready else []

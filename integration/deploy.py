"""Deploying service source: check it, store it, tell every process.

``deploy_sources`` is the one function behind the pickup directory, ``manage.py deploy``,
the management API and the admin upload. It imports each file in this process first;
a file that does not import is rejected (logged, recorded on its module for the admin)
and the previously deployed version keeps serving. So is a file that defines no services
where the deployed version has some: an empty file dropped into the pickup directory (or
one truncated by an editor or a failed copy) would otherwise undeploy the whole module and
every channel on it would answer 404. Removing services is an explicit act instead:
deleting the module in the admin or with ``DELETE /manage/api/v1/modules/{name}/``. Accepted source is written to the
database with its services in one transaction that bumps the configuration version, so
every process loads the same code within a poll interval.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import ProtectedError
from django.utils import timezone

from integration import snapshot as snapshots
from integration.models import ConfigVersion, DeployedService, ServiceModule
from integration.registry import (
    DeploymentError,
    LoadedModule,
    load_builtin,
    load_source,
    module_name_for,
    remember,
    source_hash,
)
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
    """Deploy (filename, source) pairs; return an Outcome per file, in order.

    Each file is imported here first; then everything accepted is written with a handful
    of bulk queries, whatever the number of files, in one transaction and one change.
    Deployments are serialised by a lock on the configuration version row, so when
    several processes pick up the same file, the later ones find it already deployed.
    """
    with transaction.atomic():
        ConfigVersion.lock()
        return _deploy_locked(files, origin)


def _deploy_locked(files: list[tuple[str, str]], origin: str) -> list[Outcome]:
    outcomes: list[Outcome] = []
    accepted: list[tuple[LoadedModule, str, str]] = []
    rejected: list[tuple[str, str, str, str]] = []
    names = []
    for filename, _ in files:
        try:
            names.append(module_name_for(filename))
        except DeploymentError:
            names.append("")
    existing = {
        row["name"]: row
        for row in ServiceModule.objects.filter(name__in=[n for n in names if n]).values(
            "name", "origin", "source_hash", "rejected_hash", "last_error"
        )
    }
    owners = dict(DeployedService.objects.values_list("name", "module__name"))
    owned: dict[str, list[str]] = {}
    for service, module in owners.items():
        owned.setdefault(module, []).append(service)

    for (filename, source), name in zip(files, names, strict=True):
        outcome = Outcome(filename, name)
        outcomes.append(outcome)
        digest = source_hash(source)
        row = existing.get(name)
        try:
            if not name:
                module_name_for(filename)  # raises with the reason
            if row is not None and row["origin"] == ServiceModule.Origin.BUILTIN:
                raise DeploymentError(f"`{name}` is the name of a built-in module and cannot be replaced")
            if row is not None and row["source_hash"] == digest:
                outcome.services = sorted(owned.get(name, []))
                continue  # unchanged: nothing to do
            if row is not None and row["rejected_hash"] == digest:
                outcome.error = row["last_error"]  # the same broken file again
                continue
            if "\x00" in source:  # compile() refuses it with a ValueError, and PostgreSQL cannot store it
                raise DeploymentError(f"{filename} contains NUL characters: it is not Python source")
            loaded = load_source(name, source, filename)
            if not loaded.services and owned.get(name):
                raise DeploymentError(_no_services_left(filename, name, owned[name]))
            for info in loaded.services:
                owner = owners.get(info.name)
                if owner is not None and owner != name:
                    raise DeploymentError(f"Service `{info.name}` is already deployed from module `{owner}`")
        except DeploymentError as exc:
            outcome.error = str(exc)
            if name:
                rejected.append((name, filename, digest, outcome.error))
            logger.error("Deployment of %s rejected; the previous version (if any) keeps serving: %s",
                         filename, exc)
            continue
        outcome.services = [info.name for info in loaded.services]
        outcome.changed = True
        accepted.append((loaded, filename, source))
        # Before the commit, whose hook rebuilds this process's snapshot: it then reuses
        # this import. recall() checks the hash, so a rolled-back entry does no harm.
        remember(loaded)

    if not accepted and not rejected:
        return outcomes
    with transaction.atomic(), one_change():
        now = timezone.now()
        for name, filename, digest, error in rejected:
            ServiceModule.objects.update_or_create(
                name=name,
                defaults={"last_error": error, "last_error_at": now, "rejected_hash": digest, "filename": filename},
                create_defaults={"last_error": error, "last_error_at": now, "rejected_hash": digest,
                                 "filename": filename, "origin": origin},
            )
        _store(accepted, origin, now)
        snapshots.changed()  # bulk writes send no signals
    for loaded, filename, _ in accepted:
        logger.info("Deployed %d services from %s: %s", len(loaded.services), filename,
                    ", ".join(info.name for info in loaded.services) or "(none)")
    return outcomes


def _no_services_left(filename: str, module: str, services: list[str]) -> str:
    """Why a file without services does not replace a module that has some, and what to do instead."""
    names = sorted(services)
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return (f"{filename} defines no services, but module `{module}` has {len(names)} deployed ({shown}); "
            "a file without services does not undeploy them, so the deployed version keeps serving. To remove "
            f"the module and its services, delete it in the admin (Service modules) or with "
            f"DELETE /manage/api/v1/modules/{module}/")


def _store(accepted: list[tuple[LoadedModule, str, str]], origin: str, now: datetime) -> None:
    """Write accepted modules and their services with bulk queries."""
    if not accepted:
        return
    ServiceModule.objects.bulk_create(
        [
            ServiceModule(name=loaded.name, filename=filename, origin=origin, source=source,
                          source_hash=loaded.source_hash, deployed_at=now, last_error="", last_error_at=None,
                          rejected_hash="")
            for loaded, filename, source in accepted
        ],
        update_conflicts=True,
        unique_fields=["name"],
        update_fields=["filename", "origin", "source", "source_hash", "deployed_at", "last_error",
                       "last_error_at", "rejected_hash"],
    )
    module_ids = dict(ServiceModule.objects.filter(name__in=[m.name for m, _, _ in accepted])
                      .values_list("name", "id"))
    wanted = {info.name: (module_ids[loaded.name], info.cls.__name__)
              for loaded, _, _ in accepted for info in loaded.services}
    current = {svc.name: svc for svc in DeployedService.objects.filter(module_id__in=module_ids.values())}
    DeployedService.objects.bulk_create([
        DeployedService(name=name, module_id=module_id, class_name=class_name, deployed_at=now)
        for name, (module_id, class_name) in wanted.items() if name not in current
    ])
    DeployedService.objects.filter(pk__in=[svc.pk for name, svc in current.items() if name in wanted]).update(
        deployed_at=now
    )
    for name, svc in current.items():
        if name in wanted:
            if svc.class_name != wanted[name][1]:
                svc.class_name = wanted[name][1]
                svc.save(update_fields=["class_name"])
            continue
        try:
            with transaction.atomic():
                svc.delete()
        except ProtectedError:
            # Channels still point at it; invoking it answers "not deployed" until they change.
            logger.warning("Service %s is gone from module %s but channels still use it", name, svc.module_id)


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
            _store([(loaded, dotted, source)], ServiceModule.Origin.BUILTIN, now)
            snapshots.changed()


class PickupWatcher:
    """Deploys ``*.py`` files that appear or change in the pickup directory.

    Polled by every process's snapshot thread. A file is deployed once its inode, size and
    modification time are the same on two scans in a row, so a file still being written
    is not deployed half-way. Deployment is idempotent (same source hash = no change), so
    several processes watching the same directory deploy each file once: deployments are
    serialised, and the later ones find the source unchanged.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.seen: dict[str, tuple[int, int, int]] = {}
        self.pending: dict[str, tuple[int, int, int]] = {}

    def scan(self) -> list[Outcome]:
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return []
        ready: list[tuple[str, str, tuple[int, int, int]]] = []
        for entry in entries:
            if not entry.name.endswith(".py") or entry.name.startswith(".") or not entry.is_file():
                continue
            stat = entry.stat()
            signature = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
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
            ready.append((entry.path, source, signature))
        if not ready:
            return []
        # Raises if the database is unreachable: the files stay unseen and are tried again.
        outcomes = deploy_sources([(path, source) for path, source, _ in ready], ServiceModule.Origin.PICKUP)
        for path, _, signature in ready:
            name = os.path.basename(path)
            self.seen[name] = signature
            self.pending.pop(name, None)
        return outcomes

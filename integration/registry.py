"""Service registry: name -> compiled service, built from modules, never queried per request.

Modules come from two places: built-in modules imported by dotted name
(``settings.BUILTIN_SERVICE_MODULES``) and deployed source kept in the database
(``ServiceModule.source``), executed into a fresh module object. ``load_source`` is also
how a new upload is checked before it is accepted: a file that does not import raises
``DeploymentError`` with a message an administrator can act on, and nothing changes.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import linecache
import sys
import traceback
import types
from collections.abc import Iterable
from dataclasses import dataclass

from integration.services import Service, http_handlers, service_name
from integration.sio import DeclarationError, IOSpec, compile_io

PICKUP_PACKAGE = "switchboard_deployed"


class DeploymentError(Exception):
    """Source that cannot be deployed; the message says why, for the log and the admin."""


@dataclass(frozen=True)
class ServiceInfo:
    """A deployed service as the invocation path needs it, compiled once at deployment."""

    name: str
    cls: type[Service]
    module_name: str
    handlers: frozenset[str]
    io: IOSpec


@dataclass(frozen=True)
class LoadedModule:
    name: str
    source_hash: str
    services: tuple[ServiceInfo, ...]


def source_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()


def module_name_for(filename: str) -> str:
    """``/any/dir/my_api.py`` -> ``my_api``; rejects names Python could not import."""
    stem = filename.replace("\\", "/").rsplit("/", 1)[-1]
    if stem.endswith(".py"):
        stem = stem[:-3]
    if not stem.isidentifier():
        raise DeploymentError(f"`{filename}` is not a valid Python module name (use letters, digits and _)")
    return stem


def discover(module: types.ModuleType) -> tuple[ServiceInfo, ...]:
    """Compile every Service subclass defined in the module itself (imported ones are skipped)."""
    found: list[ServiceInfo] = []
    for _, cls in inspect.getmembers(module, inspect.isclass):
        if cls is Service or not issubclass(cls, Service) or cls.__module__ != module.__name__:
            continue
        if cls.__dict__.get("abstract", False):
            continue
        name = service_name(cls, module.__name__)
        try:
            io = compile_io(cls)
        except (DeclarationError, TypeError, NameError) as exc:
            raise DeploymentError(f"Service `{name}` ({cls.__name__}) has an invalid declaration: {exc}") from None
        found.append(ServiceInfo(name, cls, module.__name__, http_handlers(cls), io))
    names = [info.name for info in found]
    duplicates = {name for name in names if names.count(name) > 1}
    if duplicates:
        raise DeploymentError(f"Several classes in `{module.__name__}` use the name {', '.join(sorted(duplicates))}")
    return tuple(found)


def load_source(name: str, source: str, filename: str = "") -> LoadedModule:
    """Execute deployed source as a fresh module and compile its services.

    The module is registered in ``sys.modules`` as ``switchboard_deployed.<name>`` (so
    dataclasses, ``inspect`` and tracebacks can find it); if it fails, the previously
    registered module is put back, so a broken module never replaces a working one.
    """
    qualified = f"{PICKUP_PACKAGE}.{name}"
    display = filename or f"<deployed {name}.py>"
    try:
        code = compile(source, display, "exec")
    except SyntaxError as exc:
        raise DeploymentError(f"Syntax error in {display}, line {exc.lineno}: {exc.msg}") from None
    module = types.ModuleType(qualified)
    module.__file__ = display
    previous = sys.modules.get(qualified)
    sys.modules[qualified] = module
    # Keep the source reachable for tracebacks and inspect.getsource.
    linecache.cache[display] = (len(source), None, source.splitlines(True), display)
    try:
        exec(code, module.__dict__)  # noqa: S102 - deploying code is what this function is for
        services = discover(module)
    except DeploymentError:
        _restore(qualified, previous)
        raise
    except BaseException as exc:
        _restore(qualified, previous)
        last = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        where = f", line {last.lineno}" if last and last.filename == display else ""
        raise DeploymentError(f"{display} could not be imported{where}: {type(exc).__name__}: {exc}") from None
    return LoadedModule(name, source_hash(source), services)


def _restore(qualified: str, previous: types.ModuleType | None) -> None:
    if previous is None:
        sys.modules.pop(qualified, None)
    else:
        sys.modules[qualified] = previous


def load_builtin(dotted: str) -> LoadedModule:
    module = importlib.import_module(dotted)
    source = inspect.getsource(module)
    return LoadedModule(dotted, source_hash(source), discover(module))


# Modules imported by a deployment in this process, kept until the next snapshot build
# picks them up, so the same source is not imported twice in a row.
_fresh: dict[str, LoadedModule] = {}


def remember(module: LoadedModule) -> None:
    _fresh[module.name] = module


def recall(name: str, digest: str) -> LoadedModule | None:
    module = _fresh.pop(name, None)
    return module if module is not None and module.source_hash == digest else None


class Registry:
    """An immutable map of service name -> ServiceInfo, plus the modules it came from."""

    def __init__(self, modules: Iterable[LoadedModule]) -> None:
        self.modules: dict[str, LoadedModule] = {}
        self.services: dict[str, ServiceInfo] = {}
        for module in modules:
            self.modules[module.name] = module
            for info in module.services:
                self.services[info.name] = info

    def get(self, name: str) -> ServiceInfo | None:
        return self.services.get(name)

    def __contains__(self, name: str) -> bool:
        return name in self.services

    def __len__(self) -> int:
        return len(self.services)

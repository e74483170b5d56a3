"""REST routing: URL path, method and Accept negotiation over a compiled table.

Built once per configuration version from the ``RestChannel`` rows (``RoutingTable.build``)
and consulted per request with no queries. Matching, in order:

1. Path: a path without parameters is a dictionary lookup; templates with ``{params}``
   are tried by regex, grouped by their first literal segment. Several templates may
   match (``/api/user/me`` and ``/api/user/{id}``): all are candidates, the one with more
   literal characters ranks first.
2. Method: channels with this method, or with a blank method (any). None: 405 + ``Allow``.
3. Accept: real content negotiation. The request's Accept list (default ``*/*``) is parsed
   with q-values; a channel's Accept (blank = any, ``text/*`` or ``application/*+json`` a
   pattern, else exact) must overlap one of its ranges with q > 0. The winner has the
   highest q, then the most specific request range, then the most specific channel Accept
   (exact, then pattern, then any), then a channel bound to this very method. None: 406.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import TYPE_CHECKING

from integration.channels import security
from integration.channels.base import BuildContext, ChannelType
from integration.errors import MethodNotAllowed, NotAcceptable, NotFound
from integration.models import RestChannel

if TYPE_CHECKING:
    from integration.channels.security import Authenticator
    from integration.registry import ServiceInfo

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class AcceptPattern:
    type: str
    subtype: str
    specificity: int  # 2 exact, 1 pattern, 0 any

    @classmethod
    def parse(cls, value: str) -> AcceptPattern:
        value = value.strip().lower()
        if value in ("", "*", "*/*"):
            return cls("*", "*", 0)
        main, _, sub = value.partition("/")
        return cls(main, sub or "*", 1 if "*" in value else 2)


@dataclass(frozen=True)
class CompiledChannel:
    """One REST channel, as the dispatcher needs it per request."""

    id: int
    name: str
    is_active: bool
    url_path: str
    method: str
    accepts: tuple[AcceptPattern, ...]
    service_name: str
    service: ServiceInfo | None  # None: the service is not deployed in this process
    security: Authenticator | None  # None with has_security: see security_problem
    has_security: bool
    data_format: str
    merge_url_params: bool
    security_problem: str = ""  # why its definition cannot be used: the channel answers 503


@lru_cache(maxsize=2048)
def parse_accept(header: str) -> tuple[tuple[str, str, float, int], ...]:
    """``text/html;q=0.9, */*;q=0.1`` -> ((type, subtype, q, specificity), ...); cached per header value."""
    ranges = []
    for part in (header or "*/*").split(","):
        media, *params = part.split(";")
        media = media.strip().lower()
        if not media:
            continue
        if media == "*":
            media = "*/*"
        main, _, sub = media.partition("/")
        sub = sub or "*"
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = max(0.0, min(1.0, float(value.strip())))
                except ValueError:
                    q = 0.0
        specificity = 0 if main == "*" else (1 if sub == "*" else 2)
        ranges.append((main, sub, q, specificity))
    return tuple(ranges) or (("*", "*", 1.0, 0),)


def _part_matches(requested: str, pattern: str) -> bool:
    if requested == "*" or pattern == "*":
        return True
    if "*" in pattern:
        return fnmatchcase(requested, pattern)
    return requested == pattern


def _accept_score(channel: CompiledChannel, ranges: tuple[tuple[str, str, float, int], ...]) -> tuple | None:
    best = None
    for main, sub, q, req_spec in ranges:
        if q <= 0:
            continue
        for pattern in channel.accepts:
            if _part_matches(main, pattern.type) and _part_matches(sub, pattern.subtype):
                score = (q, req_spec, pattern.specificity)
                if best is None or score > best:
                    best = score
    return best


def _excluded(channel: CompiledChannel, ranges: tuple[tuple[str, str, float, int], ...]) -> bool:
    """True when the request gives the channel's exact type q=0 (``application/json;q=0``)."""
    return any(
        q <= 0 and spec == 2 and pattern.specificity == 2 and (main, sub) == (pattern.type, pattern.subtype)
        for main, sub, q, spec in ranges
        for pattern in channel.accepts
    )


@dataclass
class _Template:
    regex: re.Pattern[str]
    literal_len: int
    channels: list[CompiledChannel]


class RoutingTable:
    """All REST channels of one configuration version."""

    def __init__(self, channels: list[CompiledChannel]) -> None:
        self.channels = channels
        self.static: dict[str, list[CompiledChannel]] = {}
        by_template: dict[str, _Template] = {}
        for channel in channels:
            if "{" not in channel.url_path:
                self.static.setdefault(channel.url_path, []).append(channel)
                continue
            template = by_template.get(channel.url_path)
            if template is None:
                template = by_template[channel.url_path] = _Template(
                    _compile(channel.url_path), len(_PARAM.sub("", channel.url_path)), []
                )
            template.channels.append(channel)
        # Templates indexed by their first segment when it is literal ("api" in /api/{x}).
        self.by_first: dict[str, list[_Template]] = {}
        self.wild: list[_Template] = []
        for path, template in by_template.items():
            first = path.split("/", 2)[1] if path.count("/") >= 1 else ""
            if "{" in first:
                self.wild.append(template)
            else:
                self.by_first.setdefault(first, []).append(template)
        for templates in [*self.by_first.values(), self.wild]:
            templates.sort(key=lambda t: -t.literal_len)

    def __len__(self) -> int:
        return len(self.channels)

    @classmethod
    def build(cls, context: BuildContext) -> RoutingTable:
        rows = RestChannel.objects.values_list(
            "id", "name", "is_active", "url_path", "method", "accept", "service__name", "security_id",
            "security__sec_type", "data_format", "merge_url_params",
        )
        compiled = []
        for pk, name, is_active, url_path, method, accept, service_name, security_id, sec_type, data_format, merge \
                in rows:
            authenticator, problem = context.authenticator(security.REST, security_id, sec_type)
            compiled.append(CompiledChannel(
                id=pk,
                name=name,
                is_active=is_active,
                url_path=url_path,
                method=method,
                accepts=tuple(AcceptPattern.parse(p) for p in (accept.split(",") if accept else [""])),
                service_name=service_name,
                service=context.registry.get(service_name),
                security=authenticator,
                has_security=security_id is not None,
                data_format=data_format,
                merge_url_params=merge,
                security_problem=problem,
            ))
        return cls(compiled)

    def _path_candidates(self, path: str) -> list[tuple[int, CompiledChannel, dict[str, str]]]:
        found: list[tuple[int, CompiledChannel, dict[str, str]]] = []
        static = self.static.get(path)
        if static:
            found.extend((10**6, channel, {}) for channel in static)
        first = path.split("/", 2)[1] if path.count("/") >= 1 else ""
        for template in [*self.by_first.get(first, ()), *self.wild]:
            match = template.regex.match(path)
            if match:
                params = match.groupdict()
                found.extend((template.literal_len, channel, params) for channel in template.channels)
        return found

    def match(self, method: str, path: str, accept: str) -> tuple[CompiledChannel, dict[str, str]]:
        candidates = self._path_candidates(path)
        if not candidates:
            raise NotFound("URL not found")
        by_method = [c for c in candidates if c[1].method in (method, "")]
        if not by_method:
            raise MethodNotAllowed([c[1].method for c in candidates])
        ranges = parse_accept(accept)
        best: tuple | None = None
        winner: tuple[CompiledChannel, dict[str, str]] | None = None
        for rank, channel, params in by_method:
            score = _accept_score(channel, ranges)
            if score is None or _excluded(channel, ranges):
                continue
            full = (rank, *score, channel.method == method)
            if best is None or full > best:
                best, winner = full, (channel, params)
        if winner is None:
            offered = sorted({",".join(_show(p) for p in c[1].accepts) for c in by_method})
            raise NotAcceptable(f"This URL produces {' or '.join(offered)}, which the Accept header does not allow")
        return winner


def _show(pattern: AcceptPattern) -> str:
    return f"{pattern.type}/{pattern.subtype}"


def _compile(url_path: str) -> re.Pattern[str]:
    parts: list[str] = []
    last = 0
    for match in _PARAM.finditer(url_path):
        parts.append(re.escape(url_path[last : match.start()]))
        parts.append(f"(?P<{match.group(1)}>[^/]+)")
        last = match.end()
    parts.append(re.escape(url_path[last:]))
    return re.compile("^" + "".join(parts) + "$")



class RestChannelType(ChannelType):
    """REST channels: compiled into a ``RoutingTable`` (``snap.channels["rest"]``)."""

    name = security.REST
    label = "REST"

    def build(self, context: BuildContext) -> RoutingTable:
        return RoutingTable.build(context)

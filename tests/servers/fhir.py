"""An HL7 FHIR R4 server on loopback: Patient, Practitioner and Observation over FHIR's REST API.

What it serves under its base (``/fhir`` unless configured), as https://hl7.org/fhir/R4/http.html
specifies, in ``application/fhir+json`` (``application/json`` is accepted too):

* ``GET metadata``: a CapabilityStatement listing the types, interactions and search
  parameters below (and, when secured, the OAuth token URL). Always public, as on SMART and
  most OAuth-secured servers, so a client can discover how to authenticate.
* ``GET [type]?params`` and ``POST [type]/_search`` (form body): a ``searchset`` Bundle with
  ``total``, ``link`` (``self``, ``next``/``previous`` when paging with ``_count`` /
  ``_offset``) and ``entry[]`` with ``fullUrl``, ``resource`` and ``search.mode``;
  ``_summary=count`` and ``_count=0`` give the total only; ``_sort`` by any parameter (see
  ``fhir_store`` for the matching rules).
* ``GET [type]/[id]`` (``ETag``, ``Last-Modified``; 304 on a matching ``If-None-Match``; 404
  unknown, 410 deleted) and ``GET [type]/[id]/_history/[vid]``.
* ``POST [type]``: create; 201, ``Location: [base]/[type]/[id]/_history/1``, ``ETag``; a client's
  id is ignored; ``If-None-Exist`` makes it conditional (200 with the match, 412 if several).
* ``PUT [type]/[id]``: update (200) or create with that id (201); the body's id must equal the
  URL's (else 400); ``If-Match`` mismatching the current version is 412.
* ``PATCH [type]/[id]``: JSON merge patch (RFC 7396) with ``application/json`` or
  ``application/merge-patch+json``, as fhirpy sends it; R4's own JSON Patch is answered 415.
* ``DELETE [type]/[id]``: 204 (also when already deleted; 404 if it never existed).

``Prefer: return=minimal`` / ``return=OperationOutcome`` and ``Prefer: handling=strict`` are
honoured. Errors are OperationOutcome resources with the status the spec gives. Every write
gets a new ``meta.versionId`` and ``meta.lastUpdated``. Security is ``guard.Security`` (none,
basic, or OAuth bearer tokens checked against the token server), on everything but metadata.
"""

from __future__ import annotations

import datetime as dt
import email.utils
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from tests.servers.fhir_store import (
    ID_PATTERN,
    RESOURCE_TYPES,
    SEARCH_PARAMETERS,
    SEED,
    FhirError,
    Page,
    Store,
    check_resource,
)
from tests.servers.guard import Guard, Security
from tests.servers.loopback import App, Request, Response, json_response

FHIR_JSON = "application/fhir+json; charset=utf-8"
ACCEPTED_BODIES = ("application/fhir+json", "application/json", "application/merge-patch+json")
FHIR_VERSION = "4.0.1"
SECURITY_CODES = {401: "login", 403: "forbidden", 503: "transient"}


def outcome(status: int, code: str, diagnostics: str, severity: str = "error",
            headers: list[tuple[str, str]] | None = None) -> Response:
    """An OperationOutcome answer."""
    body = {"resourceType": "OperationOutcome",
            "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}]}
    return json_response(status, body, headers, content_type=FHIR_JSON)


def _http_date(instant: str) -> str:
    """An HTTP date (for Last-Modified) from a FHIR instant."""
    return email.utils.format_datetime(dt.datetime.fromisoformat(instant.replace("Z", "+00:00")), usegmt=True)


def _etag_version(value: str) -> str:
    """The version in an ETag-like header: ``W/"3"``, ``"3"`` and ``3`` all mean version 3."""
    value = value.strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"')


class FhirApp(App):
    """The FHIR server; ``config``: ``base_path``, ``security`` (``guard.Security`` fields), ``token_url``."""

    kind = "fhir"

    def __init__(self, config: dict[str, Any]) -> None:
        self.base_path = "/" + config.get("base_path", "/fhir").strip("/")
        self.guard = Guard(Security.from_dict(config.get("security")))
        self.token_url = config.get("token_url", "")
        self.store = Store(config.get("seed", SEED))

    def reset(self) -> None:
        self.store.reset()

    def failure(self, status: int) -> Response:
        return outcome(status, "exception", f"switched to answer {status}")

    def handle(self, request: Request) -> Response:
        try:
            return self._route(request)
        except FhirError as error:
            return outcome(error.status, error.code, error.diagnostics)

    # --- Routing --------------------------------------------------------------------------------

    def _route(self, request: Request) -> Response:
        if request.path != self.base_path and not request.path.startswith(self.base_path + "/"):
            return outcome(404, "not-found", f"this server's FHIR base is {self.base_path}")
        parts = [part for part in request.path[len(self.base_path):].split("/") if part]
        base = request.base_url + self.base_path
        self._check_format(request)
        if parts == ["metadata"]:
            if request.method not in ("GET", "HEAD"):
                return self._not_allowed("GET")
            return self._fhir(200, self._capability(base))
        verdict = self.guard.check(request.headers)
        if not verdict.ok:
            return outcome(verdict.status, SECURITY_CODES.get(verdict.status, "security"), verdict.description,
                           headers=verdict.headers)
        if not parts:
            raise FhirError(404, "not-supported", "system-level interactions are not supported")
        kind = parts[0]
        if kind not in RESOURCE_TYPES:
            raise FhirError(404, "not-supported", f"resource type {kind!r} is not supported by this server")
        if len(parts) > 1 and parts[1] != "_search" and not ID_PATTERN.fullmatch(parts[1]):
            raise FhirError(400, "invalid", f"{parts[1]!r} is not a valid resource id")
        if len(parts) == 1:
            if request.method in ("GET", "HEAD"):
                return self._search(request, kind, list(parse_qsl(request.query_string, keep_blank_values=True)),
                                    base)
            if request.method == "POST":
                return self._create(request, kind, base)
            return self._not_allowed("GET, POST")
        if parts[1] == "_search" and len(parts) == 2:
            if request.method != "POST":
                return self._not_allowed("POST")
            form = parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True)
            return self._search(request, kind, [*parse_qsl(request.query_string, keep_blank_values=True), *form],
                                base)
        resource_id = parts[1]
        if len(parts) == 2:
            handler = {"GET": self._read, "HEAD": self._read, "PUT": self._update, "PATCH": self._patch,
                       "DELETE": self._delete}.get(request.method)
            if handler is None:
                return self._not_allowed("GET, PUT, PATCH, DELETE")
            return handler(request, kind, resource_id, base)
        if len(parts) == 4 and parts[2] == "_history" and request.method in ("GET", "HEAD"):
            found = self.store.version(kind, resource_id, parts[3])
            if found is None:
                raise FhirError(404, "not-found", f"{kind}/{resource_id} has no version {parts[3]}")
            if found.get("deleted"):
                raise FhirError(410, "deleted", f"version {parts[3]} of {kind}/{resource_id} is a deletion")
            return self._resource(200, found)
        raise FhirError(404, "not-supported", f"no FHIR interaction at {request.path}")

    @staticmethod
    def _check_format(request: Request) -> None:
        wanted = request.arg("_format") or request.header("Accept")
        if wanted and not any(token in wanted for token in ("json", "*/*")):
            raise FhirError(406, "not-supported", f"this server answers JSON only, not {wanted}")

    @staticmethod
    def _not_allowed(allow: str) -> Response:
        response = outcome(405, "not-supported", f"the allowed methods here are {allow}")
        response.headers.append(("Allow", allow))
        return response

    # --- Interactions ---------------------------------------------------------------------------

    def _search(self, request: Request, kind: str, params: list[tuple[str, str]], base: str) -> Response:
        strict = "handling=strict" in request.header("Prefer").replace(" ", "")
        page = self.store.search(kind, params, strict=strict)
        return self._fhir(200, self._bundle(kind, page, base))

    def _bundle(self, kind: str, page: Page, base: str) -> dict[str, Any]:
        def link(offset: int) -> str:
            query = [*page.used, ("_count", str(page.count)), ("_offset", str(offset))]
            return f"{base}/{kind}?{urlencode(query, safe=':,|/', quote_via=quote)}"

        links = [{"relation": "self", "url": link(page.offset)}]
        if not page.summary_count and page.count and page.offset + page.count < page.total:
            links.append({"relation": "next", "url": link(page.offset + page.count)})
        if page.offset and page.count:
            links.append({"relation": "previous", "url": link(max(page.offset - page.count, 0))})
        return {
            "resourceType": "Bundle",
            "type": "searchset",
            "meta": {"lastUpdated": _now_iso()},
            "total": page.total,
            "link": links,
            "entry": [{"fullUrl": f"{base}/{kind}/{resource['id']}", "resource": resource,
                       "search": {"mode": "match"}} for resource in page.resources],
        }

    def _read(self, request: Request, kind: str, resource_id: str, base: str) -> Response:
        found = self.store.current(kind, resource_id)
        if found is None:
            raise FhirError(404, "not-found", f"{kind}/{resource_id} is not known")
        if found.get("deleted"):
            raise FhirError(410, "deleted", f"{kind}/{resource_id} was deleted")
        if_none_match = request.header("If-None-Match")
        if if_none_match and _etag_version(if_none_match) == found["meta"]["versionId"]:
            return Response(304, b"", self._version_headers(found))
        return self._resource(200, found)

    def _create(self, request: Request, kind: str, base: str) -> Response:
        resource = check_resource(kind, self._body(request), resource_id=None)
        condition = request.header("If-None-Exist")
        if condition:
            matches = self.store.search(kind, list(parse_qsl(condition.lstrip("?"))), strict=True)
            if matches.total > 1:
                raise FhirError(412, "multiple-matches", f"{matches.total} {kind} resources match {condition}")
            if matches.total == 1:
                existing = self.store.search(kind, [*parse_qsl(condition.lstrip("?")), ("_count", "1")],
                                             strict=True).resources[0]
                return self._written(request, 200, existing, base)
        return self._written(request, 201, self.store.create(kind, resource), base)

    def _update(self, request: Request, kind: str, resource_id: str, base: str) -> Response:
        resource = check_resource(kind, self._body(request), resource_id=resource_id)
        if_match = request.header("If-Match")
        saved, created = self.store.update(kind, resource_id, resource, _etag_version(if_match) if if_match else None)
        return self._written(request, 201 if created else 200, saved, base)

    def _patch(self, request: Request, kind: str, resource_id: str, base: str) -> Response:
        if request.content_type == "application/json-patch+json":
            raise FhirError(415, "not-supported", "JSON Patch is not supported here; send a JSON merge patch")
        patch = self._body(request)
        if not isinstance(patch, dict):
            raise FhirError(400, "structure", "a merge patch is a JSON object")
        current = self.store.current(kind, resource_id)
        if current is None or current.get("deleted"):
            raise FhirError(404, "not-found", f"{kind}/{resource_id} is not known")
        merged = _merge(current, patch)
        if merged.get("id") != resource_id or merged.get("resourceType") != kind:
            raise FhirError(400, "invalid", "a patch cannot change the id or the resourceType")
        resource = check_resource(kind, merged, resource_id=resource_id)
        if_match = request.header("If-Match")
        saved, _ = self.store.update(kind, resource_id, resource, _etag_version(if_match) if if_match else None)
        return self._written(request, 200, saved, base)

    def _delete(self, request: Request, kind: str, resource_id: str, base: str) -> Response:
        if not self.store.delete(kind, resource_id):
            raise FhirError(404, "not-found", f"{kind}/{resource_id} is not known")
        return Response(204)

    # --- Bodies and answers ---------------------------------------------------------------------

    @staticmethod
    def _body(request: Request) -> Any:
        if request.content_type not in ACCEPTED_BODIES:
            sent = request.content_type or "no Content-Type"
            raise FhirError(415, "not-supported", f"send application/fhir+json, not {sent}")
        try:
            return request.json()
        except ValueError as exc:
            raise FhirError(400, "structure", f"the body is not JSON: {exc}") from exc

    def _written(self, request: Request, status: int, resource: dict[str, Any], base: str) -> Response:
        kind, resource_id, version = resource["resourceType"], resource["id"], resource["meta"]["versionId"]
        headers = [*self._version_headers(resource),
                   ("Location", f"{base}/{kind}/{resource_id}/_history/{version}")]
        prefer = request.header("Prefer").replace(" ", "")
        if "return=minimal" in prefer:
            return Response(status, b"", headers)
        if "return=OperationOutcome" in prefer:
            return outcome(status, "informational", f"{kind}/{resource_id} version {version} saved",
                           severity="information", headers=headers)
        return json_response(status, resource, headers, content_type=FHIR_JSON)

    def _resource(self, status: int, resource: dict[str, Any]) -> Response:
        return json_response(status, resource, self._version_headers(resource), content_type=FHIR_JSON)

    @staticmethod
    def _version_headers(resource: dict[str, Any]) -> list[tuple[str, str]]:
        return [("ETag", f'W/"{resource["meta"]["versionId"]}"'),
                ("Last-Modified", _http_date(resource["meta"]["lastUpdated"]))]

    @staticmethod
    def _fhir(status: int, body: dict[str, Any]) -> Response:
        return json_response(status, body, content_type=FHIR_JSON)

    def _capability(self, base: str) -> dict[str, Any]:
        interactions = ["read", "vread", "update", "patch", "delete", "create", "search-type"]
        resources = [{
            "type": kind,
            "interaction": [{"code": code} for code in interactions],
            "versioning": "versioned",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "searchParam": [{"name": name, "type": "token" if param_type == "boolean" else param_type}
                            for name, (param_type, _) in SEARCH_PARAMETERS[kind].items()],
        } for kind in RESOURCE_TYPES]
        rest: dict[str, Any] = {"mode": "server", "resource": resources}
        mode = self.guard.security.mode
        if mode != "none":
            code = {"oauth": "OAuth", "basic": "Basic"}.get(mode, "Certificates")
            security: dict[str, Any] = {"service": [{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": code}]}]}
            if mode == "oauth" and self.token_url:
                security["extension"] = [{
                    "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                    "extension": [{"url": "token", "valueUri": self.token_url}]}]
            rest["security"] = security
        return {
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": _now_iso()[:10],
            "kind": "instance",
            "software": {"name": "Switchboard loopback FHIR server", "version": "1"},
            "implementation": {"description": "FHIR server for Switchboard's tests", "url": base},
            "fhirVersion": FHIR_VERSION,
            "format": ["application/fhir+json", "json"],
            "patchFormat": ["application/merge-patch+json"],
            "rest": [rest],
        }


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch: objects merge recursively, null removes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


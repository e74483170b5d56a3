"""The FHIR server's data: versioned resources in memory, light validation, and search.

Search follows FHIR R4's rules for the parameter types it uses
(https://hl7.org/fhir/R4/search.html):

* **string** (``family``, ``given``, ``name``): case- and accent-insensitive match on the
  start of the value; ``:exact`` matches the whole value as is, ``:contains`` anywhere.
* **token** (``_id``, ``active``, ``gender``, ``identifier``, ``code``, ``status``):
  ``code``, ``system|code``, ``|code`` (no system) or ``system|``; ``:not`` negates;
  booleans accept only ``true`` / ``false``.
* **reference** (``subject``, ``patient``): ``Type/id``, a bare ``id``, or an absolute URL
  ending in ``Type/id``.
* **date** (``birthdate``): ``eq`` (the default), ``ne``, ``gt``, ``lt``, ``ge``, ``le``
  prefixes, at the precision given (``1985``, ``1985-04``, ``1985-04-12``).

Commas within one value are OR, a repeated parameter is AND. A parameter the server does not
know is ignored and left out of the ``self`` link (the spec's lenient handling) unless the
client sent ``Prefer: handling=strict``; an unknown modifier or a malformed value is always an
error (``SearchError``, a 400 OperationOutcome).
"""

from __future__ import annotations

import copy
import datetime as dt
import re
import threading
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

RESOURCE_TYPES = ("Patient", "Practitioner", "Observation")
ID_PATTERN = re.compile(r"[A-Za-z0-9\-.]{1,64}")
RESULT_PARAMETERS = {"_count", "_offset", "_sort", "_summary", "_total", "_format", "_pretty"}
MAX_PAGE = 100  # results per page at most, whatever _count asks (the spec lets a server cap it)
DEFAULT_PAGE = 20
GENDERS = ("male", "female", "other", "unknown")

Values = Callable[[dict[str, Any]], list[Any]]


class FhirError(Exception):
    """A request the server refuses: becomes an OperationOutcome with ``status``."""

    def __init__(self, status: int, code: str, diagnostics: str) -> None:
        super().__init__(diagnostics)
        self.status = status
        self.code = code
        self.diagnostics = diagnostics


def _names(resource: dict[str, Any], part: str) -> list[str]:
    found: list[str] = []
    for name in resource.get("name") or []:
        if not isinstance(name, dict):
            continue
        if part in ("family", "name") and isinstance(name.get("family"), str):
            found.append(name["family"])
        if part in ("given", "name"):
            found.extend(given for given in name.get("given") or [] if isinstance(given, str))
        if part == "name":
            found.extend(name[key] for key in ("text",) if isinstance(name.get(key), str))
    return found


def _codings(element: Any) -> list[tuple[str | None, str]]:
    """(system, code) pairs of a CodeableConcept, a Coding, or a list of Identifiers."""
    if isinstance(element, list):
        return [pair for item in element for pair in _codings(item)]
    if not isinstance(element, dict):
        return []
    if "coding" in element:
        return _codings(element["coding"])
    code = element.get("code", element.get("value"))
    return [(element.get("system"), str(code))] if code is not None else []


def _reference(resource: dict[str, Any], key: str) -> list[str]:
    value = resource.get(key)
    reference = value.get("reference") if isinstance(value, dict) else None
    return [reference] if isinstance(reference, str) else []


def _plain(key: str) -> Values:
    def values(resource: dict[str, Any]) -> list[Any]:
        value = resource.get(key)
        return [] if value is None else [(None, str(value).lower() if isinstance(value, bool) else str(value))]
    return values


COMMON: dict[str, tuple[str, Values]] = {"_id": ("token", lambda resource: [(None, resource["id"])])}
PERSON: dict[str, tuple[str, Values]] = {
    "active": ("boolean", _plain("active")),
    "family": ("string", lambda resource: _names(resource, "family")),
    "given": ("string", lambda resource: _names(resource, "given")),
    "name": ("string", lambda resource: _names(resource, "name")),
    "identifier": ("token", lambda resource: _codings(resource.get("identifier") or [])),
    "gender": ("token", _plain("gender")),
}
SEARCH_PARAMETERS: dict[str, dict[str, tuple[str, Values]]] = {
    "Patient": {**COMMON, **PERSON,
                "birthdate": ("date", lambda resource: [resource["birthDate"]] if "birthDate" in resource else [])},
    "Practitioner": {**COMMON, **PERSON},
    "Observation": {
        **COMMON,
        "status": ("token", _plain("status")),
        "code": ("token", lambda resource: _codings(resource.get("code"))),
        "subject": ("reference", lambda resource: _reference(resource, "subject")),
        "patient": ("reference", lambda resource: [ref for ref in _reference(resource, "subject")
                                                   if ref.startswith("Patient/")]),
    },
}
MODIFIERS = {"string": {"", "exact", "contains"}, "token": {"", "not"}, "boolean": {"", "not"},
             "reference": {"", "Patient", "Practitioner"}, "date": {""}}


def _fold(text: str) -> str:
    """Lower-cased, without accents: how FHIR string search compares by default."""
    return "".join(char for char in unicodedata.normalize("NFKD", text) if not unicodedata.combining(char)).casefold()


def _matches(kind: str, modifier: str, wanted: str, candidates: list[Any]) -> bool:
    if kind == "string":
        if modifier == "exact":
            return wanted in candidates
        folded = _fold(wanted)
        if modifier == "contains":
            return any(folded in _fold(value) for value in candidates)
        return any(_fold(value).startswith(folded) for value in candidates)
    if kind in ("token", "boolean"):
        if kind == "boolean" and wanted not in ("true", "false"):
            raise FhirError(400, "invalid", f"a boolean search value is true or false, not {wanted!r}")
        if "|" not in wanted:
            return any(value == wanted for _, value in candidates)
        system, code = wanted.split("|", 1)
        for found_system, value in candidates:
            if not system:  # "|code": the code without any system
                hit = found_system is None and value == code
            elif not code:  # "system|": any code of that system
                hit = found_system == system
            else:
                hit = found_system == system and value == code
            if hit:
                return True
        return False
    if kind == "reference":
        wanted_tail = "/".join(wanted.rstrip("/").split("/")[-2:]) if "/" in wanted else wanted
        if modifier:
            wanted_tail = f"{modifier}/{wanted_tail}"
        if "/" in wanted_tail:
            return wanted_tail in candidates
        return any(candidate.split("/")[-1] == wanted_tail for candidate in candidates)
    return any(_date_matches(wanted, candidate) for candidate in candidates)


def _date_matches(wanted: str, value: str) -> bool:
    prefix, date = (wanted[:2], wanted[2:]) if wanted[:2] in ("eq", "ne", "gt", "lt", "ge", "le") else ("eq", wanted)
    if not re.fullmatch(r"\d{4}(-\d{2}(-\d{2})?)?", date):
        raise FhirError(400, "invalid", f"a date search value is YYYY, YYYY-MM or YYYY-MM-DD, not {date!r}")
    found = value[: len(date)]
    return {"eq": found == date, "ne": found != date, "gt": found > date, "lt": found < date,
            "ge": found >= date, "le": found <= date}[prefix]


@dataclass
class Page:
    """One page of a search: the matches on it, the total, and the parameters the server used."""

    resources: list[dict[str, Any]]
    total: int
    offset: int
    count: int
    used: list[tuple[str, str]]  # the search parameters the server applied, for the self link
    summary_count: bool


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Store:
    """Versioned resources by type and id; every public method is atomic (one lock)."""

    def __init__(self, seed: list[dict[str, Any]]) -> None:
        self.lock = threading.Lock()
        self.seed = copy.deepcopy(seed)
        self.reset()

    def reset(self) -> None:
        with self.lock:
            # Each id maps to its versions, oldest first; a deleted version is {"deleted": True, ...}.
            self.history: dict[str, dict[str, list[dict[str, Any]]]] = {kind: {} for kind in RESOURCE_TYPES}
            self.next_id = 1000
            for resource in self.seed:
                self._write(resource["resourceType"], resource["id"], copy.deepcopy(resource))

    def _write(self, kind: str, resource_id: str, resource: dict[str, Any]) -> dict[str, Any]:
        versions = self.history[kind].setdefault(resource_id, [])
        resource["id"] = resource_id
        resource["meta"] = {**(resource.get("meta") or {}), "versionId": str(len(versions) + 1),
                            "lastUpdated": _now()}
        versions.append(resource)
        return copy.deepcopy(resource)

    def current(self, kind: str, resource_id: str) -> dict[str, Any] | None:
        """The latest version (a ``deleted`` marker if deleted); None if the id never existed."""
        with self.lock:
            versions = self.history[kind].get(resource_id)
            return copy.deepcopy(versions[-1]) if versions else None

    def version(self, kind: str, resource_id: str, version_id: str) -> dict[str, Any] | None:
        with self.lock:
            for resource in self.history[kind].get(resource_id, []):
                if resource["meta"]["versionId"] == version_id:
                    return copy.deepcopy(resource)
            return None

    def create(self, kind: str, resource: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.next_id += 1
            while str(self.next_id) in self.history[kind]:
                self.next_id += 1
            return self._write(kind, str(self.next_id), resource)

    def update(self, kind: str, resource_id: str, resource: dict[str, Any], if_match: str | None,
               ) -> tuple[dict[str, Any], bool]:
        """Write a new version (or the first); returns it and whether the resource is new."""
        with self.lock:
            versions = self.history[kind].get(resource_id)
            live = bool(versions) and not versions[-1].get("deleted")
            if if_match is not None and (not live or versions[-1]["meta"]["versionId"] != if_match):
                raise FhirError(412, "conflict", f"version {if_match} is not the current version of "
                                                 f"{kind}/{resource_id}")
            return self._write(kind, resource_id, resource), not live

    def delete(self, kind: str, resource_id: str) -> bool:
        """Mark as deleted; False when the id never existed."""
        with self.lock:
            versions = self.history[kind].get(resource_id)
            if not versions:
                return False
            if not versions[-1].get("deleted"):
                self._write(kind, resource_id, {"resourceType": kind, "deleted": True})
            return True

    def search(self, kind: str, params: list[tuple[str, str]], *, strict: bool) -> Page:
        known = SEARCH_PARAMETERS[kind]
        filters: list[tuple[str, str, str, Values, list[str]]] = []
        used: list[tuple[str, str]] = []
        count, offset, sort, summary_count = DEFAULT_PAGE, 0, "", False
        for name, value in params:
            base, _, modifier = name.partition(":")
            if base in RESULT_PARAMETERS:
                if base in ("_count", "_offset"):
                    if not value.isdigit():
                        raise FhirError(400, "invalid", f"{base} must be a whole number, not {value!r}")
                    if base == "_count":
                        count = min(int(value), MAX_PAGE)
                    else:
                        offset = int(value)
                    continue
                if base == "_sort":
                    sort = value
                summary_count = summary_count or (base == "_summary" and value == "count")
                used.append((name, value))
                continue
            if base not in known:
                if strict:
                    raise FhirError(400, "not-supported", f"unknown search parameter {base!r} for {kind}")
                continue  # lenient: ignored, and left out of the self link
            kind_of, values = known[base]
            if modifier not in MODIFIERS[kind_of]:
                raise FhirError(400, "not-supported", f"modifier :{modifier} is not supported on {base}")
            filters.append((kind_of, modifier, base, values, value.split(",")))
            used.append((name, value))
        with self.lock:
            live = [copy.deepcopy(versions[-1]) for versions in self.history[kind].values()
                    if not versions[-1].get("deleted")]
        found = []
        for resource in live:
            keep = True
            for kind_of, modifier, _, values, wanted in filters:
                candidates = values(resource)
                negate = modifier == "not"
                hit = any(_matches(kind_of, "" if negate else modifier, one, candidates) for one in wanted)
                if hit == negate:
                    keep = False
                    break
            if keep:
                found.append(resource)
        found = self._sorted(kind, found, sort, strict)
        page = [] if summary_count else found[offset: offset + count]
        return Page(page, len(found), offset, count, used, summary_count)

    @staticmethod
    def _sorted(kind: str, resources: list[dict[str, Any]], sort: str, strict: bool) -> list[dict[str, Any]]:
        for key in reversed([part for part in sort.split(",") if part]):
            name = key.lstrip("-")
            if name == "_id":
                def value(resource: dict[str, Any]) -> Any:
                    return (len(resource["id"]), resource["id"])  # numeric ids in numeric order
            elif name == "_lastUpdated":
                def value(resource: dict[str, Any]) -> Any:
                    return resource["meta"]["lastUpdated"]
            elif name in SEARCH_PARAMETERS[kind]:
                values = SEARCH_PARAMETERS[kind][name][1]

                def value(resource: dict[str, Any], values: Values = values) -> Any:
                    found = values(resource)
                    return str(found[0]) if found else ""
            else:
                if strict:
                    raise FhirError(400, "not-supported", f"cannot sort {kind} by {name!r}")
                continue
            resources = sorted(resources, key=value, reverse=key.startswith("-"))
        return resources


def check_resource(kind: str, resource: Any, *, resource_id: str | None) -> dict[str, Any]:
    """The body of a create or update, checked as a FHIR server checks it (``FhirError`` if bad)."""
    if not isinstance(resource, dict):
        raise FhirError(400, "structure", "the body must be a FHIR resource (a JSON object)")
    if resource.get("resourceType") != kind:
        raise FhirError(400, "invalid", f"the body's resourceType must be {kind}, "
                                        f"not {resource.get('resourceType')!r}")
    # Update: the spec wants the id in the body, equal to the one in the URL.
    if resource_id is not None and resource.get("id") != resource_id:
        raise FhirError(400, "invalid", f"the body's id ({resource.get('id')!r}) must equal the URL's "
                                        f"({resource_id!r})")
    if "meta" in resource and not isinstance(resource["meta"], dict):
        raise FhirError(400, "structure", "meta must be an object")
    if "active" in resource and not isinstance(resource["active"], bool):
        raise FhirError(400, "structure", "active must be true or false")
    if "gender" in resource and resource["gender"] not in GENDERS:
        raise FhirError(400, "code-invalid", f"gender must be one of {', '.join(GENDERS)}")
    if "name" in resource and not isinstance(resource["name"], list):
        raise FhirError(400, "structure", "name must be a list of HumanName")
    if kind == "Observation":
        for required in ("status", "code"):
            if required not in resource:
                raise FhirError(400, "required", f"Observation.{required} is required (cardinality 1..1)")
    return dict(resource)  # on create, the store replaces any id the client sent, as the spec says


SEED: list[dict[str, Any]] = [
    {"resourceType": "Practitioner", "id": "456", "active": True,
     "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}],
     "name": [{"family": "Smith", "given": ["Jane"], "prefix": ["Dr."]}], "gender": "female"},
    {"resourceType": "Practitioner", "id": "457", "active": False,
     "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1245319599"}],
     "name": [{"family": "Doe", "given": ["John"]}], "gender": "male"},
    {"resourceType": "Patient", "id": "123", "active": True,
     "identifier": [{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": "MRN-0001"}],
     "name": [{"family": "Kowalski", "given": ["Anna", "Maria"]}], "gender": "female", "birthDate": "1985-04-12"},
    {"resourceType": "Patient", "id": "124", "active": True,
     "identifier": [{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": "MRN-0002"}],
     "name": [{"family": "Nowak", "given": ["Piotr"]}], "gender": "male", "birthDate": "1979-11-02"},
    {"resourceType": "Observation", "id": "900", "status": "final",
     "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Body weight"}]},
     "subject": {"reference": "Patient/123"},
     "valueQuantity": {"value": 72.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}},
]

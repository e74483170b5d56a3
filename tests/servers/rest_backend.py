"""A REST backend for outgoing-connection tests: a few JSON endpoints that echo what they got.

Every JSON answer carries ``"echo"``: the method, path, query (``{name: [values]}``), the raw
query string, the headers (names lower-cased), the ``X-Zato-CID`` header as ``cid``, the
body (parsed JSON when it is JSON, else text) and ``auth``, who the backend took the caller
for (for OAuth: the token's ``client_id``, ``scope``, ``aud``...). Endpoints:

* ``/customers`` GET (list; ``?name=`` filters), POST (create, 201 + ``Location``);
* ``/customers/{cust_id}`` GET (404 if unknown), POST and PUT (create or replace: 201 or
  200), PATCH (merge; 404 if unknown), DELETE (200, or 404 if unknown). Customers 1, 2 and
  123 exist at start and after every reset. Bodies must be JSON objects (else 400).
* ``/billing-plan?client_id=...`` GET: the client's plan (400 without ``client_id``), the
  endpoint of the seed's ``GetClientBillingPlan`` example.
* ``/echo`` and ``/echo/<anything>``, any method, and ``/`` (GET, HEAD): only the echo.
* ``/not-json?kind=text|html|broken|empty`` GET: a plain-text, HTML, broken-JSON (declared
  ``application/json``) or empty 200 answer, for a JSON connection's error handling.
* ``/slow?seconds=S`` any method: answers after S seconds (at most ``MAX_WAIT``).
* ``/status/{code}`` any method: answers that status (with the echo, no body for 204/304;
  ``?location=`` adds a ``Location`` header, ``?retry_after=`` a ``Retry-After``).
* ``/scope/{scope}`` GET: needs that OAuth scope (403 ``insufficient_scope`` without it).

All of them need the configured security (``guard.Security``: none, basic, apikey or oauth).
An unknown path is 404, a known path with a method it does not take is 405 with ``Allow``.
"""

from __future__ import annotations

import copy
import re
import threading
from collections.abc import Callable
from typing import Any

from tests.servers.guard import Guard, Security
from tests.servers.loopback import MAX_WAIT, App, Request, Response, headers_dict, json_response

SEED_CUSTOMERS: dict[str, dict[str, Any]] = {
    "1": {"id": "1", "name": "Alpha Logistics", "email": "ops@alpha.example", "plan": "basic"},
    "2": {"id": "2", "name": "Beta Clinics", "email": "it@beta.example", "plan": "premium"},
    "123": {"id": "123", "name": "Gamma Foods", "email": "api@gamma.example", "plan": "gold"},
}
PLANS = ("basic", "premium", "gold")
ANY = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

Handler = Callable[[Request, dict[str, Any], dict[str, str]], Response]


class RestBackendApp(App):
    """The backend; ``config``: ``security`` (``guard.Security`` fields)."""

    kind = "rest"

    def __init__(self, config: dict[str, Any]) -> None:
        self.guard = Guard(Security.from_dict(config.get("security")))
        self.lock = threading.Lock()
        self.customers: dict[str, dict[str, Any]] = {}
        self.next_id = 1000
        self.release = threading.Event()
        self.reset()
        self.routes: list[tuple[re.Pattern[str], tuple[str, ...], Handler]] = [
            (re.compile(r"/"), ("GET", "HEAD"), lambda request, echo, args: json_response(200, {"echo": echo})),
            (re.compile(r"/customers"), ("GET", "HEAD", "POST"), self._customers),
            (re.compile(r"/customers/(?P<cust_id>[^/]+)"), ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"),
             self._customer),
            (re.compile(r"/billing-plan"), ("GET", "HEAD"), self._billing_plan),
            (re.compile(r"/echo(?:/.*)?"), ANY, lambda request, echo, args: json_response(200, {"echo": echo})),
            (re.compile(r"/not-json"), ("GET", "HEAD"), self._not_json),
            (re.compile(r"/slow"), ANY, self._slow),
            (re.compile(r"/status/(?P<code>[0-9]{3})"), ANY, self._status),
            (re.compile(r"/scope/(?P<scope>[^/]+)"), ("GET", "HEAD"),
             lambda request, echo, args: json_response(200, {"scope": args["scope"], "echo": echo})),
        ]

    def reset(self) -> None:
        with self.lock:
            self.customers = copy.deepcopy(SEED_CUSTOMERS)
            self.next_id = 1000
        old, self.release = self.release, threading.Event()
        old.set()  # a /slow answer in progress ends now

    def handle(self, request: Request) -> Response:
        for pattern, methods, handler in self.routes:
            match = pattern.fullmatch(request.path)
            if match is None:
                continue
            if request.method not in methods:
                return json_response(405, {"error": "method_not_allowed"}, [("Allow", ", ".join(methods))])
            scopes = [match["scope"]] if "scope" in pattern.groupindex else None
            verdict = self.guard.check(request.headers, scopes)
            if not verdict.ok:
                return json_response(verdict.status, {"error": verdict.error, "error_description": verdict.description},
                                     verdict.headers)
            return handler(request, self._echo(request, verdict.principal), match.groupdict())
        return json_response(404, {"error": "not_found", "path": request.path})

    @staticmethod
    def _echo(request: Request, principal: dict[str, Any]) -> dict[str, Any]:
        body: Any = None
        if request.body:
            try:
                body = request.json()
            except ValueError:
                body = request.text()
        return {
            "method": request.method,
            "path": request.path,
            "query": request.query,
            "query_string": request.query_string,
            "headers": headers_dict(request.headers),
            "cid": request.header("X-Zato-CID") or None,
            "content_type": request.content_type,
            "body": body,
            "auth": principal,
        }

    # --- Endpoints ------------------------------------------------------------------------------

    def _customers(self, request: Request, echo: dict[str, Any], args: dict[str, str]) -> Response:
        if request.method == "POST":
            data = echo["body"]
            if not isinstance(data, dict):
                return _bad_body(echo)
            with self.lock:
                self.next_id += 1
                cust_id = str(self.next_id)
                self.customers[cust_id] = {**data, "id": cust_id}
                customer = dict(self.customers[cust_id])
            return json_response(201, {"customer": customer, "echo": echo},
                                 [("Location", f"{request.base_url}/customers/{cust_id}")])
        wanted = (request.arg("name") or "").lower()
        with self.lock:
            found = [dict(customer) for customer in self.customers.values()
                     if wanted in str(customer.get("name", "")).lower()]
        return json_response(200, {"customers": found, "count": len(found), "echo": echo})

    def _customer(self, request: Request, echo: dict[str, Any], args: dict[str, str]) -> Response:
        cust_id, method = args["cust_id"], request.method
        if method in ("POST", "PUT", "PATCH") and not isinstance(echo["body"], dict):
            return _bad_body(echo)
        with self.lock:
            existing = self.customers.get(cust_id)
            if method in ("GET", "HEAD"):
                if existing is None:
                    return _no_customer(cust_id, echo)
                return json_response(200, {"customer": dict(existing), "echo": echo})
            if method in ("POST", "PUT"):
                self.customers[cust_id] = {**echo["body"], "id": cust_id}
                return json_response(201 if existing is None else 200,
                                     {"customer": dict(self.customers[cust_id]), "echo": echo})
            if existing is None:
                return _no_customer(cust_id, echo)
            if method == "PATCH":
                existing.update({**echo["body"], "id": cust_id})
                return json_response(200, {"customer": dict(existing), "echo": echo})
            del self.customers[cust_id]
            return json_response(200, {"deleted": cust_id, "echo": echo})

    def _billing_plan(self, request: Request, echo: dict[str, Any], args: dict[str, str]) -> Response:
        client_id = request.arg("client_id")
        if not client_id:
            return json_response(400, {"error": "invalid_request", "detail": "client_id is required", "echo": echo})
        with self.lock:
            customer = self.customers.get(client_id)
        # A client the backend does not know still has a plan: the first one, as a real billing
        # system puts new clients on its default plan.
        plan = customer.get("plan", PLANS[0]) if customer else PLANS[0]
        return json_response(200, {"client_id": client_id, "plan": plan, "currency": "EUR",
                                   "monthly_fee": {"basic": 10, "premium": 50, "gold": 100}.get(plan, 10),
                                   "echo": echo})

    @staticmethod
    def _not_json(request: Request, echo: dict[str, Any], args: dict[str, str]) -> Response:
        kind = request.arg("kind") or "text"
        if kind == "html":
            return Response(200, b"<!doctype html><title>Hi</title><p>Not JSON</p>",
                            [("Content-Type", "text/html; charset=utf-8")])
        if kind == "broken":
            return Response(200, b'{"customer": {"id": 1,', [("Content-Type", "application/json")])
        if kind == "empty":
            return Response(200, b"", [("Content-Type", "application/json")])
        return Response(200, b"plain text, not JSON", [("Content-Type", "text/plain; charset=utf-8")])

    def _slow(self, request: Request, echo: dict[str, Any], args: dict[str, str]) -> Response:
        try:
            seconds = min(max(float(request.arg("seconds") or "1"), 0.0), MAX_WAIT)
        except ValueError:
            return json_response(400, {"error": "invalid_request", "detail": "seconds must be a number"})
        self.release.wait(seconds)
        return json_response(200, {"slept": seconds, "echo": echo})

    @staticmethod
    def _status(request: Request, echo: dict[str, Any], args: dict[str, str]) -> Response:
        code = int(args["code"])
        if not 200 <= code <= 599:
            return json_response(400, {"error": "invalid_request", "detail": "status must be from 200 to 599"})
        headers = []
        if request.arg("location"):
            headers.append(("Location", request.arg("location") or ""))
        if request.arg("retry_after"):
            headers.append(("Retry-After", request.arg("retry_after") or ""))
        if code in (204, 304):
            return Response(code, b"", headers)
        return json_response(code, {"status": code, "echo": echo}, headers)


def _bad_body(echo: dict[str, Any]) -> Response:
    return json_response(400, {"error": "invalid_request", "detail": "the body must be a JSON object", "echo": echo})


def _no_customer(cust_id: str, echo: dict[str, Any]) -> Response:
    return json_response(404, {"error": "not_found", "detail": f"no customer {cust_id}", "echo": echo})

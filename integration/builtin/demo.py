"""Demo services, deployed with the platform so a fresh install has something to call.

``make run`` binds ``demo.hello`` to ``GET /demo/hello``; the others show the features
the README describes (SimpleIO, dataclass models, handle_VERB, Accept routing).
"""

from __future__ import annotations

from dataclasses import dataclass

from integration.services import Int, Service


class Hello(Service):
    """Greets whoever calls: ``GET /demo/hello?name=Ann`` -> ``{"hello": "Ann"}``."""

    name = "demo.hello"

    def handle(self) -> None:
        self.response.payload = {"hello": self.request.input.get("name") or "world", "cid": self.cid}


class Echo(Service):
    """Returns the request payload unchanged."""

    name = "demo.echo"

    def handle(self) -> None:
        self.response.payload = self.request.payload


class GetCustomer(Service):
    """SimpleIO: a required integer input and declared output, wrapped in ``response``."""

    name = "demo.get-customer"

    class SimpleIO:
        input_required = (Int("customer_id"),)
        output_required = ("customer_id", "name")
        output_optional = ("email",)

    def handle(self) -> None:
        customer_id = self.request.input.customer_id
        self.response.payload = {"customer_id": customer_id, "name": f"Customer {customer_id}", "email": None}


@dataclass
class NewCustomer:
    name: str
    email: str
    age: int | None = None


@dataclass
class CreatedCustomer:
    customer_id: int
    name: str


class CreateCustomer(Service):
    """Dataclass models as input and output."""

    name = "demo.create-customer"
    input = NewCustomer
    output = CreatedCustomer

    def handle(self) -> None:
        new = self.request.input
        self.response.payload = CreatedCustomer(customer_id=1000 + len(new.name), name=new.name)
        self.response.status_code = 201


class Resource(Service):
    """One service for several verbs: ``handle_GET`` and ``handle_DELETE``."""

    name = "demo.resource"

    def handle_GET(self) -> None:
        self.response.payload = {"method": "GET", "params": self.request.http.params}

    def handle_DELETE(self) -> None:
        self.response.status_code = 204
        self.response.payload = ""


class InvoiceJSON(Service):
    name = "demo.invoice-json"

    def handle(self) -> None:
        self.response.payload = {"invoice": self.request.payload, "format": "json"}


class InvoicePDF(Service):
    name = "demo.invoice-pdf"

    def handle(self) -> None:
        self.response.content_type = "application/pdf"
        self.response.payload = b"%PDF-1.4\n% demo invoice\n"


class TextAny(Service):
    """Reads the actual Accept value of a request routed by a ``text/*`` pattern."""

    name = "demo.text-any"

    def handle(self) -> None:
        wanted = self.request.http.accept.split(",")[0].split(";")[0].strip() or "text/plain"
        self.response.content_type = wanted
        self.response.payload = f"You asked for {wanted}"

"""The service runtime: naming, declarations, the invocation path and its error shape."""

from __future__ import annotations

import logging
import re

import pytest

from integration.errors import BadRequest, InternalError, ServiceNotFound, SwitchboardError
from integration.invoke import invoke, new_cid
from integration.registry import DeploymentError, load_source
from integration.services import Service, service_name, uncamelify

pytestmark = pytest.mark.django_db


def test_it_names_services_by_zatos_rule() -> None:
    class GetCustomer(Service):
        pass

    # my_api.py with GetCustomer becomes my-api.get-customer (ZATO-WIRE 4.3).
    assert service_name(GetCustomer, "my_api") == "my-api.get-customer"
    assert service_name(GetCustomer, "switchboard_deployed.my_api") == "my-api.get-customer"
    assert uncamelify("ILikeWSDLDocs") == "i-like-wsdl-docs"
    assert uncamelify("Ping2Pong") == "ping2-pong"


def test_an_explicit_name_wins() -> None:
    class Anything(Service):
        name = "crm.customer.get"

    assert service_name(Anything, "my_api") == "crm.customer.get"


def test_a_cid_is_24_lowercase_hex_characters() -> None:
    cids = {new_cid() for _ in range(1000)}
    assert len(cids) == 1000
    assert all(re.fullmatch(r"[0-9a-f]{24}", cid) for cid in cids)


def test_simpleio_validates_and_types_input(deploy) -> None:
    deploy("shop.py", """
        from integration.services import Service, Int

        class Order(Service):
            class SimpleIO:
                input_required = ("customer_id", Int("quantity"), "is_express")
                input_optional = ("note",)
                output_required = ("total",)

            def handle(self):
                i = self.request.input
                self.response.payload = {"total": i.quantity * 10, "express": i.is_express, "note": i["note"]}
    """)
    result = invoke("shop.order", {"customer_id": "7", "quantity": "3", "is_express": "true"})
    # Undeclared output keys are dropped and classic SimpleIO output is wrapped in "response", as in Zato.
    assert result.payload == {"response": {"total": 30}}


def test_it_names_every_bad_field(deploy) -> None:
    deploy("shop2.py", """
        from integration.services import Service, Int, Bool

        class Order(Service):
            class SimpleIO:
                input_required = ("customer_id", Int("quantity"), Bool("gift"))

            def handle(self):
                pass
    """)
    with pytest.raises(BadRequest) as caught:
        invoke("shop2.order", {"quantity": "many", "gift": "perhaps"})
    assert caught.value.details == (
        "Element missing: customer_id; Invalid value for `quantity`: expected an integer; "
        "Invalid value for `gift`: expected a boolean"
    )


def test_a_single_missing_element_reads_as_zato_says_it(deploy) -> None:
    deploy("one.py", """
        from integration.services import Service

        class Get(Service):
            class SimpleIO:
                input_required = ("name",)
    """)
    with pytest.raises(BadRequest) as caught:
        invoke("one.get", {})
    assert caught.value.details == "Element missing: name"


def test_dataclass_models_validate_nested_input_and_render_output(deploy) -> None:
    deploy("models_demo.py", """
        from dataclasses import dataclass, field
        from integration.services import Service

        @dataclass
        class Address:
            city: str
            zip_code: str

        @dataclass
        class Person:
            name: str
            age: int
            address: Address
            tags: list[str] = field(default_factory=list)
            nickname: str | None = None

        @dataclass
        class Reply:
            greeting: str
            city: str

        class Greet(Service):
            input = Person
            output = Reply

            def handle(self):
                person = self.request.input
                self.response.payload = Reply(greeting=f"Hi {person.name} ({person.age})", city=person.address.city)
    """)
    ok = invoke("models-demo.greet", {"name": "Ann", "age": "41", "address": {"city": "Oslo", "zip_code": "0150"}})
    # Models are never wrapped in a response element.
    assert ok.payload == {"greeting": "Hi Ann (41)", "city": "Oslo"}

    with pytest.raises(BadRequest) as caught:
        invoke("models-demo.greet", {"name": "Ann", "age": "old", "address": {"city": "Oslo"}, "tags": "x"})
    assert caught.value.details == (
        "Invalid value for `age`: expected an integer; Element missing: address.zip_code; Element is not a list: tags"
    )


def test_missing_required_output_is_the_authors_error_not_the_callers(deploy, caplog) -> None:
    deploy("bad_out.py", """
        from integration.services import Service

        class Broken(Service):
            class SimpleIO:
                output_required = ("id", "name")

            def handle(self):
                self.response.payload = {"id": 1}
    """)
    with pytest.raises(SwitchboardError) as caught:
        invoke("bad-out.broken")
    assert caught.value.status_code == 500
    assert caught.value.details == "Required element `name` missing in response"


def test_skip_empty_keys_drops_empty_output(deploy) -> None:
    deploy("skip.py", """
        from integration.services import Service

        class Get(Service):
            class SimpleIO:
                output_optional = ("a", "b", "c")
                skip_empty_keys = True
                response_elem = None

            def handle(self):
                self.response.payload = {"a": 1, "b": "", "c": None}
    """)
    assert invoke("skip.get").payload == {"a": 1}


def test_an_exception_in_a_service_is_a_500_with_the_traceback_only_in_the_log(deploy, caplog) -> None:
    deploy("crash.py", """
        from integration.services import Service

        class Crash(Service):
            def handle(self):
                raise RuntimeError("database password is hunter2")
    """)
    cid = new_cid()
    with caplog.at_level(logging.ERROR), pytest.raises(InternalError) as caught:
        invoke("crash.crash", cid=cid)
    assert caught.value.status_code == 500
    assert "hunter2" not in str(caught.value.details)
    logged = [r for r in caplog.records if cid in r.getMessage()]
    assert logged and logged[0].exc_info is not None  # the traceback goes to the log, under the CID


def test_self_invoke_runs_another_service_with_the_same_cid(deploy) -> None:
    deploy("chain.py", """
        from integration.services import Service

        class Inner(Service):
            def handle(self):
                self.response.payload = {"inner_cid": self.cid, "got": self.request.input.x}

        class Outer(Service):
            def handle(self):
                inner = self.invoke("chain.inner", {"x": 5})
                self.response.payload = {"outer_cid": self.cid, **inner}

        class Selfish(Service):
            def handle(self):
                self.invoke("chain.selfish")
    """)
    result = invoke("chain.outer")
    assert result.payload["got"] == 5
    assert result.payload["inner_cid"] == result.payload["outer_cid"] == result.cid
    with pytest.raises(SwitchboardError, match="cannot invoke itself"):
        invoke("chain.selfish")


def test_errors_raised_by_an_invoked_service_reach_the_caller(deploy) -> None:
    deploy("relay.py", """
        from integration.services import Service, BadRequest

        class Picky(Service):
            def handle(self):
                raise BadRequest("no such customer")

        class Caller(Service):
            def handle(self):
                self.invoke("relay.picky")
    """)
    with pytest.raises(BadRequest, match="no such customer"):
        invoke("relay.caller")


def test_the_logger_prefixes_every_line_with_the_cid(deploy, caplog) -> None:
    deploy("talk.py", """
        from integration.services import Service

        class Talk(Service):
            def handle(self):
                self.logger.info("hello from %s", "talk")
    """)
    with caplog.at_level(logging.INFO):
        result = invoke("talk.talk")
    assert f"[{result.cid}] hello from talk" in caplog.text


def test_an_unknown_service_is_404() -> None:
    with pytest.raises(ServiceNotFound) as caught:
        invoke("no.such.service")
    assert caught.value.status_code == 404
    assert caught.value.details == "No such service `no.such.service`"


def test_invalid_declarations_are_rejected_at_deployment() -> None:
    source = (
        "from integration.services import Service\n"
        "class Both(Service):\n"
        "    class SimpleIO:\n"
        "        input = ('a',)\n"
        "        input_required = ('b',)\n"
    )
    with pytest.raises(DeploymentError, match="Cannot provide input_required"):
        load_source("both", source)

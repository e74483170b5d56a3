"""Admin pages of file channels, AMQP channels, AMQP broker connections and outgoing AMQP.

Through Django's test client on the real PostgreSQL test database, logged in as Alice with a
TOTP code (``ADMIN_REQUIRE_TOTP`` is on): each list page answers, finds rows by ``?q=`` and
filters them, each change form shows the row and saves an edit; the broker's password is
write-only (typed to set it, never shown back, kept when left empty, removed with a tick) and
appears on no page, not even encrypted. No page contacts a broker.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from connections.models import AMQPBroker, OutgoingAMQP
from integration.models import AMQPChannel, DeployedService, FileChannel

pytestmark = pytest.mark.django_db

SECRET = "amqp-pw-never-shown-7f3a"


@pytest.fixture
def staff(admin_client_alice: Any) -> Any:
    return admin_client_alice


@pytest.fixture
def rows(builtins: None) -> dict[str, Any]:
    service = DeployedService.objects.get(name="demo.get-customer")
    broker = AMQPBroker(name="rabbit-main", host="mq.example.internal", vhost="/shop", username="shop")
    broker.set_password(SECRET)
    broker.save()
    other = AMQPBroker.objects.create(name="rabbit-other", host="mq2.example.internal", tls=True)
    made = {
        "service": service, "broker": broker, "other": other,
        "inbox": FileChannel.objects.create(name="orders-inbox", directory="/srv/drop/orders", patterns="*.csv",
                                            service=service, recursive=True),
        "invoices": FileChannel.objects.create(name="invoices-inbox", directory="/srv/drop/invoices",
                                               patterns="*.pdf", service=service, is_active=False),
        "orders": AMQPChannel.objects.create(name="orders-queue", broker=broker, queue="shop.orders",
                                             service=service),
        "audit": AMQPChannel.objects.create(name="audit-queue", broker=other, queue="audit.events",
                                            service=service, data_format="text"),
        "out": OutgoingAMQP.objects.create(name="to-warehouse", broker=broker, exchange="warehouse",
                                           routing_key="orders.new"),
        "out2": OutgoingAMQP.objects.create(name="to-billing", broker=other, exchange="billing"),
    }
    return made


def url(model: type, action: str = "changelist", *args: Any) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{action}", args=args)


def form_data(response: Any) -> dict[str, Any]:
    """The change form's fields as the browser would post them back (the admin's own form instance)."""
    form = response.context["adminform"].form
    data: dict[str, Any] = {}
    for name, field in form.fields.items():
        value = form.initial.get(name, field.initial)
        if value is None:
            continue
        if isinstance(value, bool):
            if value:
                data[name] = "on"
            continue
        data[name] = getattr(value, "pk", value)
    return data


def assert_no_secret(response: Any, broker: AMQPBroker) -> None:
    assert SECRET.encode() not in response.content
    assert broker.password_encrypted and broker.password_encrypted.encode() not in response.content


# --- File channels ---------------------------------------------------------------------------------------


def test_file_channels_list_search_and_filter(staff: Any, rows: dict[str, Any]) -> None:
    listing = staff.get(url(FileChannel))
    assert listing.status_code == 200
    assert b"orders-inbox" in listing.content and b"invoices-inbox" in listing.content
    assert b"/srv/drop/orders" in listing.content and b"demo.get-customer" in listing.content

    by_directory = staff.get(url(FileChannel), {"q": "drop/invoices"})
    assert b"invoices-inbox" in by_directory.content and b"orders-inbox" not in by_directory.content
    by_pattern = staff.get(url(FileChannel), {"q": "*.csv"})
    assert b"orders-inbox" in by_pattern.content and b"invoices-inbox" not in by_pattern.content
    inactive = staff.get(url(FileChannel), {"is_active__exact": "0"})
    assert b"invoices-inbox" in inactive.content and b"orders-inbox" not in inactive.content


def test_a_file_channel_change_form_saves_an_edit_and_refuses_a_relative_path(staff: Any,
                                                                               rows: dict[str, Any]) -> None:
    channel = rows["inbox"]
    page = staff.get(url(FileChannel, "change", channel.pk))
    assert page.status_code == 200 and b"/srv/drop/orders" in page.content and b"Afterwards" in page.content

    data = form_data(page)
    data.update(after_success="move", done_directory="/srv/done/orders")
    saved = staff.post(url(FileChannel, "change", channel.pk), data)
    assert saved.status_code == 302, saved.content[:2000]
    channel.refresh_from_db()
    assert channel.after_success == "move" and channel.done_directory == "/srv/done/orders"

    data.update(directory="relative/dir")
    refused = staff.post(url(FileChannel, "change", channel.pk), data)
    assert refused.status_code == 200 and b"Give an absolute path" in refused.content
    channel.refresh_from_db()
    assert channel.directory == "/srv/drop/orders"


def test_the_file_claims_list_is_read_only(staff: Any, rows: dict[str, Any]) -> None:
    listing = staff.get(reverse("admin:integration_fileclaim_changelist"))
    assert listing.status_code == 200
    assert staff.get(reverse("admin:integration_fileclaim_add")).status_code == 403


# --- AMQP channels ---------------------------------------------------------------------------------------


def test_amqp_channels_list_search_filter_and_change_form(staff: Any, rows: dict[str, Any]) -> None:
    listing = staff.get(url(AMQPChannel))
    assert listing.status_code == 200
    assert b"orders-queue" in listing.content and b"shop.orders" in listing.content
    assert b"rabbit-main" in listing.content
    assert_no_secret(listing, rows["broker"])

    found = staff.get(url(AMQPChannel), {"q": "audit.events"})
    assert b"audit-queue" in found.content and b"orders-queue" not in found.content
    text_only = staff.get(url(AMQPChannel), {"data_format__exact": "text"})
    assert b"audit-queue" in text_only.content and b"orders-queue" not in text_only.content
    on_broker = staff.get(url(AMQPChannel), {"broker__id__exact": rows["broker"].pk})
    assert b"orders-queue" in on_broker.content and b"audit-queue" not in on_broker.content

    channel = rows["orders"]
    page = staff.get(url(AMQPChannel, "change", channel.pk))
    assert page.status_code == 200 and b"shop.orders" in page.content
    assert_no_secret(page, rows["broker"])
    data = form_data(page)
    data.update(prefetch="50", max_requeues="5")
    saved = staff.post(url(AMQPChannel, "change", channel.pk), data)
    assert saved.status_code == 302, saved.content[:2000]
    channel.refresh_from_db()
    assert (channel.prefetch, channel.max_requeues) == (50, 5)

    data.update(dead_letter_queue="shop.orders")
    refused = staff.post(url(AMQPChannel, "change", channel.pk), data)
    assert refused.status_code == 200 and b"must be another queue" in refused.content


# --- Broker connections: the password is write-only --------------------------------------------------------


def test_brokers_list_and_search_without_the_password(staff: Any, rows: dict[str, Any]) -> None:
    listing = staff.get(url(AMQPBroker))
    assert listing.status_code == 200
    assert b"rabbit-main" in listing.content and b"mq.example.internal" in listing.content
    assert b"sb-ping" in listing.content  # the Ping button
    assert_no_secret(listing, rows["broker"])

    found = staff.get(url(AMQPBroker), {"q": "mq2.example"})
    assert b"rabbit-other" in found.content and b"rabbit-main" not in found.content
    tls = staff.get(url(AMQPBroker), {"tls__exact": "1"})
    assert b"rabbit-other" in tls.content and b"rabbit-main" not in tls.content


def test_the_broker_password_is_never_shown_kept_when_empty_replaced_and_removed(staff: Any,
                                                                                  rows: dict[str, Any]) -> None:
    broker = rows["broker"]
    change = url(AMQPBroker, "change", broker.pk)
    page = staff.get(change)
    assert page.status_code == 200 and b"mq.example.internal" in page.content
    assert b'name="new_password"' in page.content
    assert_no_secret(page, broker)
    assert b"password_encrypted" not in page.content

    data = form_data(page)
    data.pop("new_password", None)
    data["heartbeat"] = "15"
    assert staff.post(change, data).status_code == 302
    broker.refresh_from_db()
    assert broker.heartbeat == 15 and broker.get_password() == SECRET  # left empty: kept

    replaced = staff.post(change, {**data, "new_password": "a-new-one-9c1e"}, follow=True)
    assert replaced.status_code == 200 and b"a-new-one-9c1e" not in replaced.content
    broker.refresh_from_db()
    assert broker.get_password() == "a-new-one-9c1e"
    again = staff.get(change)
    assert b"a-new-one-9c1e" not in again.content and broker.password_encrypted.encode() not in again.content

    assert staff.post(change, {**data, "clear_password": "on"}).status_code == 302
    broker.refresh_from_db()
    assert broker.get_password() == ""

    add = staff.get(url(AMQPBroker, "add"))
    assert add.status_code == 200 and b'name="new_password"' in add.content


# --- Outgoing AMQP ---------------------------------------------------------------------------------------


def test_outgoing_amqp_list_search_filter_and_change_form(staff: Any, rows: dict[str, Any]) -> None:
    listing = staff.get(url(OutgoingAMQP))
    assert listing.status_code == 200
    assert b"to-warehouse" in listing.content and b"orders.new" in listing.content and b"sb-ping" in listing.content
    assert_no_secret(listing, rows["broker"])

    found = staff.get(url(OutgoingAMQP), {"q": "billing"})
    assert b"to-billing" in found.content and b"to-warehouse" not in found.content
    on_broker = staff.get(url(OutgoingAMQP), {"broker__id__exact": rows["broker"].pk})
    assert b"to-warehouse" in on_broker.content and b"to-billing" not in on_broker.content

    out = rows["out"]
    page = staff.get(url(OutgoingAMQP, "change", out.pk))
    assert page.status_code == 200 and b"warehouse" in page.content
    assert_no_secret(page, rows["broker"])
    data = form_data(page)
    data.update(routing_key="orders.changed")
    saved = staff.post(url(OutgoingAMQP, "change", out.pk), data)
    assert saved.status_code == 302, saved.content[:2000]
    out.refresh_from_db()
    assert out.routing_key == "orders.changed"

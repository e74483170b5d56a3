"""What every admin listing shares: a selectable page size and no full-table counts.

``accounts.admin_site.AdminSite.register`` mixes ``ListingMixin`` into every registered
ModelAdmin, third-party ones included (django-celery-beat's, auth's), so these rules hold
for every listing without each admin repeating them:

* ``?page_size=`` picks 25, 50 (the default, as in Zato), 100 or 250 rows a page; anything
  else falls back to the default. It is not a filter: the changelist drops it from the
  lookup parameters but keeps it in every link it builds (pages, sorting, filters, search).
* An unfiltered listing of a table PostgreSQL believes holds more than
  ``ADMIN_EXACT_COUNT_LIMIT`` rows shows the planner's estimate instead of running
  ``COUNT(*)`` over the whole table; filtered and searched listings are counted exactly.
  ``show_full_result_count`` is off, so no second full count runs either.
* Facet counts (``?_facets``) are off: each is a full-table aggregate per filter.

``count_of`` is the way a listing shows how many rows point at each listed one (the channels
of a service or a security definition) without a query per row.
"""

from __future__ import annotations

import functools
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.options import ShowFacets
from django.contrib.admin.views.main import ALL_VAR, PAGE_VAR, ChangeList
from django.core.paginator import Paginator
from django.db import connections, router
from django.db.models import Count, IntegerField, Model, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.utils.functional import cached_property
from django.utils.text import smart_split, unescape_string_literal

PAGE_SIZE_VAR = "page_size"
PAGE_SIZES = (25, 50, 100, 250)
DEFAULT_PAGE_SIZE = 50
DEFAULT_EXACT_COUNT_LIMIT = 20_000


def page_size_from(request: HttpRequest) -> int:
    """The page size the request asks for, or the default when it asks for none or for a size not offered."""
    raw = request.GET.get(PAGE_SIZE_VAR, "")
    try:
        size = int(raw)
    except ValueError:
        return DEFAULT_PAGE_SIZE
    return size if size in PAGE_SIZES else DEFAULT_PAGE_SIZE


def exact_count_limit() -> int:
    """Above this many (estimated) rows an unfiltered listing is not counted exactly."""
    return int(getattr(settings, "ADMIN_EXACT_COUNT_LIMIT", DEFAULT_EXACT_COUNT_LIMIT))


def estimated_rows(model: type[Model]) -> int | None:
    """PostgreSQL's estimate of a table's rows, as the planner makes it; None when there is none.

    ``reltuples`` is the row count at the last ANALYZE/VACUUM; scaled by the table's current
    size in pages it follows growth since then, for the price of reading a catalogue row.
    None on other databases and for a table never analysed (the caller then counts exactly).
    """
    alias = router.db_for_read(model)
    connection = connections[alias]
    if connection.vendor != "postgresql":
        return None
    table = connection.ops.quote_name(model._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.reltuples, c.relpages, pg_relation_size(c.oid) / current_setting('block_size')::int "
            "FROM pg_class c WHERE c.oid = to_regclass(%s)",
            [table],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    tuples, pages, current_pages = row
    if tuples < 0 or pages <= 0:
        return None  # never analysed, or empty when it last was
    return int(tuples / pages * current_pages)


def is_unfiltered(queryset: QuerySet[Any]) -> bool:
    """Whether the queryset reads the whole table: no WHERE, no DISTINCT, no slice, no grouping."""
    query = queryset.query
    return (
        not query.where
        and not query.distinct
        and query.low_mark == 0
        and query.high_mark is None
        and query.group_by is None
        and not query.combinator
    )


def search_terms(search_term: str) -> list[str]:
    """The words of an admin search, as Django's own search splits them ("quoted phrases" stay whole)."""
    terms = []
    for bit in smart_split(search_term):
        if bit.startswith(('"', "'")) and bit[0] == bit[-1] and len(bit) > 1:
            bit = unescape_string_literal(bit)
        terms.append(bit)
    return terms


def count_of(model: Any, field: str) -> Coalesce:
    """An annotation counting ``model`` rows whose ``field`` points at the listed row.

    A correlated subquery, not ``Count()`` over a join: the list query needs no GROUP BY,
    the page's count query drops it (Django strips unused annotations from counts) and
    each listed row costs one index lookup, whatever the size of the table.
    """
    rows = (
        model.objects.filter(**{field: OuterRef("pk")}).order_by().values(field).annotate(n=Count("pk")).values("n")
    )
    return Coalesce(Subquery(rows, output_field=IntegerField()), 0)


class EstimatingPaginator(Paginator):
    """A paginator that, on a big unfiltered table, takes PostgreSQL's estimate for the count.

    ``COUNT(*)`` reads every row (PostgreSQL keeps no row count), which on a table of
    millions takes seconds on every listing page. ``estimated`` tells the template to say
    "about". A page past the true end is then simply empty, never an error.
    """

    estimated = False

    @cached_property
    def count(self) -> int:
        object_list = self.object_list
        if isinstance(object_list, QuerySet) and is_unfiltered(object_list):
            estimate = estimated_rows(object_list.model)
            if estimate is not None and estimate > exact_count_limit():
                self.estimated = True
                return estimate
        return super().count


class SizedChangeList(ChangeList):
    """A changelist whose page size comes from ``?page_size=`` and which never filters on it."""

    def __init__(self, request: HttpRequest, *args: Any, **kwargs: Any) -> None:
        # Read before ChangeList.__init__, which builds the queryset and the page straight away.
        self.page_size = page_size_from(request)
        super().__init__(request, *args, **kwargs)
        raw = request.GET.get(PAGE_SIZE_VAR)
        if raw is not None and raw != str(self.page_size):
            # Not a size on offer: the links built from here on carry the default instead.
            self.params.pop(PAGE_SIZE_VAR, None)
            self.filter_params.pop(PAGE_SIZE_VAR, None)

    def get_filters_params(self, params: dict[str, Any] | None = None) -> dict[str, Any]:
        lookup_params = super().get_filters_params(params)
        lookup_params.pop(PAGE_SIZE_VAR, None)
        return lookup_params

    def get_results(self, request: HttpRequest) -> None:
        self.list_per_page = self.page_size
        super().get_results(request)

    @property
    def page_size_links(self) -> list[dict[str, Any]]:
        """One link per size on offer, back to page one, keeping search, filters and sorting."""
        return [
            {
                "size": size,
                "current": size == self.page_size,
                "url": self.get_query_string({PAGE_SIZE_VAR: size, PAGE_VAR: None, ALL_VAR: None}),
            }
            for size in PAGE_SIZES
        ]

    @property
    def count_is_estimate(self) -> bool:
        return bool(getattr(self.paginator, "estimated", False))


@functools.cache
def sized_changelist(base: type[ChangeList]) -> type[ChangeList]:
    """``base`` with the page-size behaviour added (an admin's own ChangeList subclass keeps its own)."""
    if issubclass(base, SizedChangeList):
        return base
    if base is ChangeList:
        return SizedChangeList
    return type(f"Sized{base.__name__}", (SizedChangeList, base), {"__module__": base.__module__})


class ListingMixin(admin.ModelAdmin):
    """Mixed into every ModelAdmin registered on the site (see ``accounts.admin_site``).

    It comes first in the MRO of the admins it wraps, so the class attributes here win
    over theirs: that is deliberate for the three below, which no listing may opt out of.
    """

    list_per_page = DEFAULT_PAGE_SIZE
    show_full_result_count = False
    show_facets = ShowFacets.NEVER

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return sized_changelist(super().get_changelist(request, **kwargs))

    def get_paginator(
        self,
        request: HttpRequest,
        queryset: QuerySet[Any],
        per_page: int,
        orphans: int = 0,
        allow_empty_first_page: bool = True,
    ) -> Paginator:
        # An admin that brings its own paginator keeps it; Django's default one is replaced.
        paginator_class = EstimatingPaginator if self.paginator is Paginator else self.paginator
        return paginator_class(queryset, per_page, orphans, allow_empty_first_page)

"""Filter types shared by the management API's filter sets (django-filter).

django-filter's defaults are lenient in ways that hide mistakes in a script: its boolean
filter reads ``?is_active=yes`` as "no filter" and returns every row. An operator who
writes a wrong value wants to be told, so every filter here either understands its value
or makes the request a 400 naming the parameter (the base viewset turns filter-set errors
into the one error shape). Names (of services, definitions, modules) are plain text
filters: a name that matches nothing is a valid question with an empty answer, not an
error, which is also what these filters answered before they moved to django-filter.
"""

from __future__ import annotations

from typing import Any

import django_filters
from django import forms
from django.core.exceptions import ValidationError

TRUE_WORDS = frozenset({"true", "1"})
FALSE_WORDS = frozenset({"false", "0"})


class StrictBooleanField(forms.Field):
    """``true`` or ``false`` (any case; ``1``/``0`` too); anything else is invalid, not ignored."""

    widget = forms.TextInput

    def to_python(self, value: Any) -> bool | None:
        if value is None or value == "":
            return None
        text = str(value).strip().lower()
        if text in TRUE_WORDS:
            return True
        if text in FALSE_WORDS:
            return False
        raise ValidationError("Use true or false.", code="invalid")


class StrictBooleanFilter(django_filters.BooleanFilter):
    """A boolean filter that refuses values it does not understand (django-filter's ignores them)."""

    field_class = StrictBooleanField

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("widget", forms.TextInput)
        super().__init__(*args, **kwargs)


class _UpperChoiceField(django_filters.fields.ChoiceField):
    def to_python(self, value: Any) -> str:
        return super().to_python(value).strip().upper()


class UpperChoiceFilter(django_filters.ChoiceFilter):
    """A choice given in any case (``?method=get``), compared upper-cased, as channels store it."""

    field_class = _UpperChoiceField


def names_filter(field_name: str, help_text: str) -> django_filters.CharFilter:
    """An exact name (of a related object): unknown names give an empty list."""
    return django_filters.CharFilter(field_name=field_name, help_text=help_text)

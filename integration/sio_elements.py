"""The typed elements of SimpleIO declarations: what one declared value may be, and its conversion.

``Int("customer_id")``, ``Date("since")`` and the rest check and convert one incoming value
and render one outgoing value; ``elem_for`` types an untyped name by Zato's naming convention
(``is_*`` is a bool, ``*_id`` an int, and so on). ``integration.sio`` compiles whole
declarations from these and re-exports every public name here, which is where service authors
(through ``integration.services``) and the registry import them from. ``_Invalid`` is shared
with ``integration.sio`` only.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from typing import Any


class Bunch(dict):
    """A dict whose keys are also attributes: ``input.customer_id`` or ``input['customer_id']``."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value


class DeclarationError(Exception):
    """A service's input/output declaration cannot be used (reported at deployment)."""


class _Invalid(Exception):
    def __init__(self, expected: str) -> None:
        self.expected = expected


# --- Typed elements -----------------------------------------------------------------------


class Elem:
    """A named, typed element of a SimpleIO declaration."""

    expected = "a value"

    def __init__(self, name: str, default: Any = None) -> None:
        self.name = name
        self.default = default

    def convert(self, value: Any) -> Any:
        return value

    def to_output(self, value: Any) -> Any:
        return value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class AsIs(Elem):
    pass


class Opaque(AsIs):
    pass


class Text(Elem):
    expected = "a string"

    def convert(self, value: Any) -> Any:
        if isinstance(value, str):
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float, decimal.Decimal)):
            raise _Invalid(self.expected)
        return str(value)


class Secret(Text):
    pass


class Int(Elem):
    expected = "an integer"

    def convert(self, value: Any) -> Any:
        if isinstance(value, bool):
            raise _Invalid(self.expected)
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise _Invalid(self.expected)


class Float(Elem):
    expected = "a number"

    def convert(self, value: Any) -> Any:
        if isinstance(value, bool):
            raise _Invalid(self.expected)
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise _Invalid(self.expected)


class Decimal(Elem):
    expected = "a decimal number"

    def convert(self, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float, str, decimal.Decimal)):
            raise _Invalid(self.expected)
        try:
            return decimal.Decimal(str(value))
        except decimal.InvalidOperation:
            raise _Invalid(self.expected) from None

    def to_output(self, value: Any) -> Any:
        return str(value) if isinstance(value, decimal.Decimal) else value


class Bool(Elem):
    expected = "a boolean"
    _words = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False, "on": True, "off": False}

    def convert(self, value: Any) -> Any:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in self._words:
            return self._words[value.strip().lower()]
        raise _Invalid(self.expected)


class Dict(Elem):
    expected = "an object"

    def convert(self, value: Any) -> Any:
        if isinstance(value, dict):
            return Bunch(value)
        raise _Invalid(self.expected)


class List(Elem):
    expected = "a list"

    def convert(self, value: Any) -> Any:
        if isinstance(value, list):
            return value
        raise _Invalid(self.expected)


class DictList(Elem):
    expected = "a list of objects"

    def convert(self, value: Any) -> Any:
        if isinstance(value, list) and all(isinstance(item, dict) for item in value):
            return [Bunch(item) for item in value]
        raise _Invalid(self.expected)


class Date(Elem):
    expected = "a date (YYYY-MM-DD)"

    def convert(self, value: Any) -> Any:
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return value
        if isinstance(value, str):
            try:
                return dt.date.fromisoformat(value.strip())
            except ValueError:
                pass
        raise _Invalid(self.expected)

    def to_output(self, value: Any) -> Any:
        return value.isoformat() if isinstance(value, dt.date) else value


class DateTime(Date):
    expected = "a date and time (ISO 8601)"

    def convert(self, value: Any) -> Any:
        if isinstance(value, dt.datetime):
            return value
        if isinstance(value, str):
            try:
                return dt.datetime.fromisoformat(value.strip())
            except ValueError:
                pass
        raise _Invalid(self.expected)


class UTC(DateTime):
    pass


class UUID(Elem):
    expected = "a UUID"

    def convert(self, value: Any) -> Any:
        if isinstance(value, uuid.UUID):
            return value
        if isinstance(value, str):
            try:
                return uuid.UUID(value.strip())
            except ValueError:
                pass
        raise _Invalid(self.expected)

    def to_output(self, value: Any) -> Any:
        return str(value) if isinstance(value, uuid.UUID) else value


_BOOL_PREFIXES = ("by_", "has_", "is_", "may_", "needs_", "should_")
_INT_SUFFIXES = ("_count", "_id", "_size", "_size_min", "_size_max", "_timeout")
_SECRET_NAMES = {
    "password", "password1", "password2", "token", "secret_key", "auth_data", "auth_token",
    "api_key", "apiKey", "xApiKey", "tls_pem_passphrase",
}


def elem_for(declared: str | Elem) -> Elem:
    """Turn a declared name into a typed element, using Zato's naming convention for bare names."""
    if isinstance(declared, Elem):
        return declared
    if not isinstance(declared, str) or not declared.strip():
        raise DeclarationError(f"SimpleIO elements must be names or typed elements, got {declared!r}")
    name = declared.strip()
    if name.startswith(_BOOL_PREFIXES):
        return Bool(name)
    if name == "id" or name.endswith(_INT_SUFFIXES):
        return Int(name)
    if name in _SECRET_NAMES:
        return Secret(name)
    return Text(name)

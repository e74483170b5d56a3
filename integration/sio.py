"""Declared input and output: Zato's SimpleIO and typed dataclass models.

A service declares what it takes and returns in one of two styles:

* a nested ``SimpleIO`` class with ``input_required``, ``input_optional``,
  ``output_required``, ``output_optional`` (or the compact ``input``/``output`` where a
  leading ``-`` marks an optional name), ``response_elem`` and ``skip_empty_keys``;
* ``input = SomeDataclass`` / ``output = SomeDataclass`` on the service class.

Both are compiled once, at deployment, into an ``IOSpec`` whose ``parse_input`` and
``render_output`` run per request. Untyped SimpleIO names are typed by Zato's naming
convention (``is_*`` is a bool, ``*_id`` an int, and so on).

The typed elements a declaration is made of (``Int``, ``Date``, ``elem_for`` ...) are in
``integration.sio_elements`` and importable from here; this module compiles declarations
into specs and checks input and output against them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import types
import typing
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from integration.errors import OutputInvalid, ValidationFailed
from integration.sio_elements import (
    UTC,
    UUID,
    AsIs,
    Bool,
    Bunch,
    Date,
    DateTime,
    Decimal,
    DeclarationError,
    Dict,
    DictList,
    Elem,
    Float,
    Int,
    List,
    Opaque,
    Secret,
    Text,
    _Invalid,
    elem_for,
)

__all__ = [
    "DEFAULT_RESPONSE_ELEM",
    "UTC",
    "UUID",
    "AsIs",
    "Bool",
    "Bunch",
    "Date",
    "DateTime",
    "Decimal",
    "DeclarationError",
    "Dict",
    "DictList",
    "Elem",
    "FlatSpec",
    "Float",
    "IOSpec",
    "Int",
    "List",
    "Many",
    "ModelSpec",
    "Opaque",
    "Secret",
    "Text",
    "compile_io",
    "elem_for",
]


# --- Compiled specifications ------------------------------------------------------------------


def _names(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, Elem)):
        return [value]
    if isinstance(value, Iterable):
        return list(value)
    raise DeclarationError(f"Expected a name or a list of names, got {value!r}")


def _split_compact(value: Any) -> tuple[list[Any], list[Any]]:
    required, optional = [], []
    for item in _names(value):
        name = item.name if isinstance(item, Elem) else item
        if isinstance(name, str) and name.startswith("-"):
            if isinstance(item, Elem):
                item.name = name[1:]
                optional.append(item)
            else:
                optional.append(name[1:])
        else:
            required.append(item)
    return required, optional


@dataclasses.dataclass(frozen=True)
class FlatSpec:
    """A flat list of required and optional typed elements."""

    required: tuple[Elem, ...]
    optional: tuple[Elem, ...]
    default_value: Any = None

    @classmethod
    def build(cls, required: Any, optional: Any, default_value: Any = None) -> FlatSpec:
        req = tuple(elem_for(item) for item in _names(required))
        opt = tuple(elem_for(item) for item in _names(optional))
        seen: set[str] = set()
        for elem in req + opt:
            if elem.name in seen:
                raise DeclarationError(f"Element `{elem.name}` is declared twice")
            seen.add(elem.name)
        return cls(req, opt, default_value)

    def parse(self, data: Any) -> Bunch:
        if data in (None, ""):
            data = {}
        if not isinstance(data, dict):
            raise ValidationFailed(["Input must be a JSON object"])
        problems: list[str] = []
        result = Bunch()
        for elem in self.required:
            value = data.get(elem.name)
            if value is None or value == "":
                problems.append(f"Element missing: {elem.name}")
                continue
            result[elem.name] = _convert(elem, value, problems)
        for elem in self.optional:
            value = data.get(elem.name)
            if value is None:
                result[elem.name] = elem.default if elem.default is not None else self.default_value
            else:
                result[elem.name] = _convert(elem, value, problems)
        if problems:
            raise ValidationFailed(problems)
        return result

    def render_item(self, item: Any, skip_empty: bool | frozenset[str]) -> dict[str, Any]:
        if dataclasses.is_dataclass(item) and not isinstance(item, type):
            item = dataclasses.asdict(item)
        if not isinstance(item, dict):
            raise OutputInvalid(f"Output must be an object, got {type(item).__name__}")
        out: dict[str, Any] = {}
        for elem in self.required:
            if elem.name not in item:
                raise OutputInvalid(f"Required element `{elem.name}` missing in response")
            out[elem.name] = elem.to_output(item[elem.name])
        for elem in self.optional:
            if elem.name in item:
                out[elem.name] = elem.to_output(item[elem.name])
        if skip_empty:
            out = {
                key: value
                for key, value in out.items()
                if not (value in (None, "", [], {}) and (skip_empty is True or key in skip_empty))
            }
        return out


def _convert(elem: Elem, value: Any, problems: list[str]) -> Any:
    try:
        return elem.convert(value)
    except _Invalid as exc:
        problems.append(f"Invalid value for `{elem.name}`: expected {exc.expected}")
        return None


# --- Dataclass models -------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert_typed(tp: Any, value: Any, path: str, problems: list[str]) -> Any:
    """Convert a JSON value into the annotated type, appending a problem on mismatch."""
    origin = typing.get_origin(tp)
    if tp is Any or tp is object:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            attempt: list[str] = []
            converted = _convert_typed(arg, value, path, attempt)
            if not attempt:
                return converted
        problems.append(f"Invalid value for `{path}`: expected {' or '.join(_type_name(a) for a in args)}")
        return None
    if origin is list:
        if not isinstance(value, list):
            problems.append(f"Element is not a list: {path}")
            return None
        (item_tp,) = typing.get_args(tp) or (Any,)
        return [_convert_typed(item_tp, item, f"{path}[{index}]", problems) for index, item in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            problems.append(f"Invalid value for `{path}`: expected an object")
            return None
        return value
    if tp is list:
        if not isinstance(value, list):
            problems.append(f"Element is not a list: {path}")
            return None
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            problems.append(f"Invalid value for `{path}`: expected an object")
            return None
        return _build_model(tp, value, f"{path}.", problems)
    simple = _SIMPLE_TYPES.get(tp)
    if simple is not None:
        try:
            return simple(path).convert(value)
        except _Invalid as exc:
            problems.append(f"Invalid value for `{path}`: expected {exc.expected}")
            return None
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    problems.append(f"Invalid value for `{path}`: expected {_type_name(tp)}")
    return None


_SIMPLE_TYPES: dict[Any, type[Elem]] = {
    int: Int,
    float: Float,
    str: Text,
    bool: Bool,
    decimal.Decimal: Decimal,
    dt.date: Date,
    dt.datetime: DateTime,
    uuid.UUID: UUID,
}


def _build_model(model: type, data: dict[str, Any], prefix: str, problems: list[str]) -> Any:
    hints = typing.get_type_hints(model)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(model):
        if not field.init:
            continue
        path = f"{prefix}{field.name}"
        has_default = field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING
        if field.name not in data or data[field.name] is None:
            if has_default:
                continue
            if _is_optional(hints.get(field.name)):
                values[field.name] = None
                continue
            problems.append(f"Element missing: {path}")
            continue
        values[field.name] = _convert_typed(hints.get(field.name, Any), data[field.name], path, problems)
    if problems:
        return None
    return model(**values)


def _is_optional(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp)


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    return value


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A dataclass model used as input or output."""

    model: type
    many: bool = False

    def parse(self, data: Any) -> Any:
        problems: list[str] = []
        if self.many:
            if not isinstance(data, list):
                raise ValidationFailed(["Input must be a JSON list"])
            result = [_convert_typed(self.model, item, f"[{i}]", problems) for i, item in enumerate(data)]
        else:
            if data in (None, ""):
                data = {}
            if not isinstance(data, dict):
                raise ValidationFailed(["Input must be a JSON object"])
            result = _build_model(self.model, data, "", problems)
        if problems:
            raise ValidationFailed(problems)
        return result

    def render(self, payload: Any) -> Any:
        items = payload if self.many else [payload]
        if self.many and not isinstance(payload, list):
            raise OutputInvalid(f"Output must be a list of {self.model.__name__}")
        rendered = []
        for item in items:
            if isinstance(item, self.model):
                rendered.append(_jsonable(item))
            elif isinstance(item, dict):
                problems: list[str] = []
                _build_model(self.model, item, "", problems)
                if problems:
                    raise OutputInvalid("Invalid response: " + "; ".join(problems))
                rendered.append(_jsonable(item))
            else:
                raise OutputInvalid(f"Output must be a {self.model.__name__}, got {type(item).__name__}")
        return rendered if self.many else rendered[0]


class Many:
    """``input = Many(Customer)`` declares a list of models."""

    def __init__(self, model: type) -> None:
        self.model = model


def _model_spec(value: Any) -> ModelSpec | None:
    if isinstance(value, Many):
        value = ModelSpec(value.model, many=True)
    elif typing.get_origin(value) is list and dataclasses.is_dataclass(typing.get_args(value)[0]):
        value = ModelSpec(typing.get_args(value)[0], many=True)
    elif isinstance(value, type) and dataclasses.is_dataclass(value):
        value = ModelSpec(value)
    else:
        return None
    typing.get_type_hints(value.model)  # fail at deployment, not per request, on bad annotations
    return value


@dataclasses.dataclass(frozen=True)
class IOSpec:
    """Everything the invocation path needs to check a service's input and output."""

    input: FlatSpec | ModelSpec | None = None
    output: FlatSpec | ModelSpec | None = None
    response_elem: str | None = None
    skip_empty: bool | frozenset[str] = False

    def parse_input(self, data: Any) -> Any:
        return self.input.parse(data) if self.input is not None else None

    def render_output(self, payload: Any) -> Any:
        if self.output is None or payload is None or isinstance(payload, (str, bytes)):
            rendered = _jsonable(payload) if not isinstance(payload, (str, bytes)) else payload
        elif isinstance(self.output, ModelSpec):
            rendered = self.output.render(payload)
        elif isinstance(payload, list):
            rendered = [self.output.render_item(item, self.skip_empty) for item in payload]
        else:
            rendered = self.output.render_item(payload, self.skip_empty)
        if self.response_elem and isinstance(rendered, (dict, list)):
            return {self.response_elem: rendered}
        return rendered


DEFAULT_RESPONSE_ELEM = "response"


def compile_io(service_cls: type) -> IOSpec:
    """Compile a service class's declarations into an IOSpec; raise DeclarationError if unusable."""
    sio = service_cls.__dict__.get("SimpleIO") or getattr(service_cls, "SimpleIO", None)
    class_input = getattr(service_cls, "input", None)
    class_output = getattr(service_cls, "output", None)

    if sio is None:
        return IOSpec(input=_class_level(class_input), output=_class_level(class_output))

    attrs: Callable[[str], Any] = lambda name: getattr(sio, name, None)  # noqa: E731 - local accessor
    compact_in, compact_out = attrs("input"), attrs("output")
    if compact_in is not None and (attrs("input_required") is not None or attrs("input_optional") is not None):
        raise DeclarationError("Cannot provide input_required or input_optional if input is given")
    if compact_out is not None and (attrs("output_required") is not None or attrs("output_optional") is not None):
        raise DeclarationError("Cannot provide output_required or output_optional if output is given")
    default_value = attrs("default_input_value")

    def side(compact: Any, required: Any, optional: Any) -> FlatSpec | ModelSpec | None:
        model = _model_spec(compact)
        if model is not None:
            return model
        if compact is not None:
            required, optional = _split_compact(compact)
        if required is None and optional is None:
            return None
        return FlatSpec.build(required, optional, default_value)

    skip = attrs("skip_empty_keys")
    if skip is None or skip is False:
        skip_empty: bool | frozenset[str] = False
    elif skip is True:
        skip_empty = True
    else:
        skip_empty = frozenset(_names(skip))
    response_elem = getattr(sio, "response_elem", DEFAULT_RESPONSE_ELEM)
    return IOSpec(
        input=side(compact_in, attrs("input_required"), attrs("input_optional")),
        output=side(compact_out, attrs("output_required"), attrs("output_optional")),
        response_elem=response_elem or None,
        skip_empty=skip_empty,
    )


def _class_level(value: Any) -> FlatSpec | ModelSpec | None:
    """``input``/``output`` declared on the service class itself: a model or compact names, never wrapped."""
    if value is None:
        return None
    model = _model_spec(value)
    if model is not None:
        return model
    required, optional = _split_compact(value)
    return FlatSpec.build(required, optional)

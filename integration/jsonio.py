"""Parsing JSON that comes from outside: one function, one error, documented limits.

Every place that turns raw JSON from a caller into Python values goes through
``loads``: REST channel bodies, ``/zato/jwt/log-in``, WebSocket messages, the management
API (``JSONParser``), the admin's Invoke form and a Vault chooser service's answer.
Python's ``json`` module alone is not fit for hostile input (the first two items below
were reproduced as 500s with a traceback, and as close 4003 on WebSockets):

* **Nesting.** The decoder recurses once per array or object, so ``[[[[...]]]]`` about
  1,000 levels deep raises ``RecursionError`` (not ``ValueError``), and a document just
  under that depth parses but crashes whatever walks it next (input validation,
  rendering a reply). ``loads`` refuses more than ``MAX_DEPTH`` levels before decoding.
* **Huge integers.** Turning a decimal string into an int costs time quadratic in its
  length, which is why Python refuses more than 4,300 digits (a ``ValueError`` that is
  not a ``JSONDecodeError``). ``loads`` applies its own ``MAX_INT_DIGITS``, the same
  number, whatever the interpreter's setting (``PYTHONINTMAXSTRDIGITS=0`` removes it).
* **Numbers JSON cannot carry back.** ``1e400`` becomes ``inf`` and ``NaN``/``Infinity``
  are accepted by Python but are not JSON: a service would echo them as ``Infinity``,
  which no other JSON parser reads. Refused.
* **Unpaired surrogates.** ``"\\ud800"`` is valid JSON syntax but not text: it cannot be
  encoded as UTF-8, so it fails later in PostgreSQL, a log line or a reply. Refused.
* **Bytes.** Decoded strictly (UTF-8, or UTF-16/32 as ``json`` detects them from the
  first bytes), so invalid sequences are an error here rather than a surrogate later.

Every refusal is ``InvalidJSON``: a ``BadRequest`` (so channels answer 400 in the one
error shape) and a ``ValueError`` (so code that catches the ``json`` module's errors
keeps working). Its message says what was wrong and, for syntax errors, where.

The checks run in C (bytes methods, substring searches, simple regular expressions; no
Python loop over the text) and each is guarded by a cheaper one, so only a document that
could break a limit is examined closely. Measured on this project's machine: a small
body costs about 2 microseconds more than ``json.loads``; an 8 MB array of 100,000
objects 1.3 times as long; 8 MB of nothing but numbers 1.7 times. Size limits are not
this module's job: each caller has its own (``MAX_REQUEST_BODY``, a WebSocket channel's
``max_message_size``).
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import re
import sys
import uuid
from itertools import accumulate
from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError

from integration.errors import BadRequest

#: Arrays and objects may nest this deep (``[[1]]`` is 2). Real documents (FHIR resources,
#: HL7 converted to JSON, API payloads) stay far below; the bound keeps everything that walks
#: a payload recursively (validation, rendering, the JSON encoder) well inside Python's stack.
MAX_DEPTH = 100
#: Digits an integer may have: Python's own default limit (CVE-2020-10735), kept whatever
#: the interpreter is configured with.
MAX_INT_DIGITS = 4300

# For ``depth``: every byte but the structural ones is dropped (bytes.translate, C speed).
_STRUCTURE = bytes(range(256)).translate(None, b'[]{}"')
_STRING = re.compile(rb'"[^"]*"')
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1
# For spotting numbers that may be out of range: digits become 0, exponent letters e, signs
# stay, everything else a space; then plain substring searches (C speed) find a digit run
# long enough to overflow a float (or to be an integer over MAX_INT_DIGITS) or a number
# with an exponent. Matches inside strings are harmless: they only send the document down
# the checked path.
_NUMBERS = bytearray(b" " * 256)
_NUMBERS[ord("0"): ord("9") + 1] = b"0" * 10
_NUMBERS[ord("e")] = _NUMBERS[ord("E")] = ord("e")
_NUMBERS[ord("+")], _NUMBERS[ord("-")] = ord("+"), ord("-")
_BIG_NUMBER_SIGNS = (b"0" * 309, b"0e0", b"0e-0", b"0e+0")
# A \uD800-\uDFFF escape: the document may hold an unpaired surrogate.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE_REASON = "a string holds an unpaired UTF-16 surrogate (U+D800 to U+DFFF), which is not text"


class InvalidJSON(BadRequest, ValueError):
    """Input that is not JSON the platform accepts; ``reason`` says why (and where, for syntax)."""

    def __init__(self, reason: str, what: str = "") -> None:
        self.reason = reason
        super().__init__(f"Invalid JSON in {what}: {reason}" if what else f"Invalid JSON: {reason}")


def loads(data: bytes | bytearray | str, what: str = "") -> Any:
    """Parse ``data`` as JSON within this module's limits, or raise ``InvalidJSON``.

    ``what`` names the input in the message ("request body", "message").
    """
    text, raw = _text(data, what)
    # Fewer opening brackets than the limit cannot nest deeper than it: the usual case.
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and depth(raw) > MAX_DEPTH:
        raise InvalidJSON(f"arrays and objects are nested more than {MAX_DEPTH} levels deep", what)
    numbers = raw.translate(_NUMBERS)
    checked = any(sign in numbers for sign in _BIG_NUMBER_SIGNS)
    try:
        if checked:
            value = json.loads(text, parse_constant=_constant, parse_int=_int, parse_float=_float)
        else:
            value = json.loads(text, parse_constant=_constant)
    except json.JSONDecodeError as exc:
        raise InvalidJSON(f"{exc.msg} (line {exc.lineno}, column {exc.colno})", what) from None
    except _Refused as exc:
        raise InvalidJSON(str(exc), what) from None
    except ValueError:
        # The interpreter's own digit limit, when it is set lower than ours.
        raise InvalidJSON(f"an integer has more than {sys.get_int_max_str_digits()} digits", what) from None
    except RecursionError:  # within MAX_DEPTH only if the caller's own stack is nearly used up
        raise InvalidJSON("arrays and objects are nested too deeply", what) from None
    if _SURROGATE_ESCAPE.search(raw) is not None:
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidJSON(_SURROGATE_REASON, what) from None
    return value


def depth(data: bytes | str) -> int:
    """How deep arrays and objects nest in JSON text (brackets inside strings do not count).

    Safe on any input, hostile or not JSON at all: it never recurses, and every step runs in
    C (bytes methods, one simple regular expression, iterators), linear in the length:

    1. escaped backslashes, then escaped quotes, are removed, so every quote left opens or
       closes a string (UTF-8 never uses these ASCII bytes inside a multi-byte character);
    2. everything but quotes and brackets is dropped;
    3. adjacent quotes are removed (an empty string, or the end of one and the start of the
       next: either way no bracket lies between them and the quotes after keep their
       order), then what is left of strings, quotes around brackets;
    4. the depth is the highest running sum of +1 per opening and -1 per closing bracket.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    skeleton = raw.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _STRUCTURE).replace(b'""', b"")
    brackets = _STRING.sub(b"", skeleton).replace(b'"', b"")
    if not brackets:
        return 0
    return max(0, max(accumulate(map(_STEP.__getitem__, brackets))))


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser with ``loads``' limits, for the management API (``REST_FRAMEWORK``)."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict[str, Any] | None = None) -> Any:
        data = stream.read() if stream is not None else b""
        try:
            return loads(data, "request body")
        except InvalidJSON as exc:
            raise ParseError(str(exc.details)) from None


class _Refused(ValueError):
    """Raised from the decoder's hooks; ``loads`` turns it into InvalidJSON."""


def _text(data: bytes | bytearray | str, what: str) -> tuple[str, bytes]:
    """The text to parse, and the same text in UTF-8 for the byte-level checks."""
    if isinstance(data, str):
        try:
            return data, data.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidJSON(_SURROGATE_REASON, what) from None
    raw = bytes(data)
    encoding = json.detect_encoding(raw)
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        name = "UTF-8" if encoding.startswith("utf-8") else encoding.upper()
        raise InvalidJSON(f"not valid {name} (byte {exc.start})", what) from None
    return text, raw if encoding == "utf-8" else text.encode("utf-8")


def _constant(name: str) -> Any:
    raise _Refused(f"{name} is not a JSON value")


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _Refused(f"an integer has more than {MAX_INT_DIGITS} digits")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"the number {text[:24]}{'...' if len(text) > 24 else ''} is out of range")
    return value


def json_default(value: Any) -> Any:
    """``json.dumps``' ``default`` for what services return: dates, decimals, UUIDs, sets and tuples."""
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")

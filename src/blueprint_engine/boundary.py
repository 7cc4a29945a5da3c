"""The input boundary: request data PostgreSQL or JSON cannot hold is refused before any service.

Python accepts more than the rest of the stack does. Every JSON body, form field, query and
path parameter, and header the API reads passes through here once (applied by
``http.CheckedRoute``; signed webhooks call it themselves, after their signature check), and
is rejected with the path of the offending field when it holds:

- NUL (U+0000) in a string or object key: PostgreSQL ``text`` and ``jsonb`` cannot store it.
- a lone surrogate (U+D800-U+DFFF) in a string or key (JSON's ``"\\ud800"``): not Unicode
  scalar values, so they cannot be encoded as UTF-8 and psycopg refuses to send them.
- a number that is not finite: ``NaN``, ``Infinity`` (Python's json module accepts them, RFC
  8259 section 6 does not) and literals beyond a double such as ``1e400`` (parsed as infinity).
  ``jsonb`` refuses all of them.
- an integer outside the signed 64-bit range [-2**63, 2**63 - 1]: that of ``bigint``, the
  widest PostgreSQL integer column, and of int64 in the Go and Java JSON decoders a payload
  may be forwarded to (Inngest's server is Go); money in minor units and ids fit with room
  to spare. Longer literals are never converted, so Python's 4300-digit limit on ``int()``
  (a ValueError deep in the parser) is never reached.
- containers nested more than ``MAX_DEPTH`` (64) levels deep: blueprints nest about ten,
  provider payloads fewer; anything deeper is hostile and would make every recursive walk
  over it (validation, templates, rendering) costly.

Errors: content problems are 422 ``validation_error`` (``details[].loc`` e.g. ``["body",
"payload", "items", 3, "name"]``, ``["query", "trace_id"]``); a body that is not UTF-8 JSON is
400 ``malformed_json``; a header that is not printable ASCII is 400 ``invalid_header``.
Webhooks report the same problems as 400 ``invalid_payload`` (:func:`webhook_payload`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from starlette.datastructures import FormData, UploadFile

from blueprint_engine.errors import (
    InvalidHeader,
    InvalidPayload,
    Loc,
    MalformedJson,
    ValidationFailed,
)
from blueprint_engine.store.storable import MAX_DEPTH, text_problem

INT_MIN, INT_MAX = -(2**63), 2**63 - 1
_MAX_ISSUES = 20  # a hostile body could hold millions; the first few say enough
_INT_CHARS = len(str(INT_MIN))  # 20: no in-range integer literal is longer (JSON has no 0-padding)
_OUT_OF_RANGE = object()  # what an over-long integer literal parses to; reported by the walk

Issue = dict[str, Any]


def loads(raw: bytes, loc: Loc | None = None) -> Any:
    """Parse a JSON request body and check every value in it (see the module docstring).

    Args:
        raw: the body as received. JSON between systems is UTF-8 (RFC 8259 section 8.1).
        loc: path of the body in error details (default ``["body"]``).

    Raises:
        MalformedJson: 400, not UTF-8 or not JSON.
        ValidationFailed: 422, details list up to 20 problems with their paths.
    """
    loc = ["body"] if loc is None else loc
    try:
        text = raw.decode("utf-8-sig")  # a byte order mark "MAY" be ignored (section 8.1)
    except UnicodeDecodeError as exc:
        raise MalformedJson(f"not UTF-8 (invalid byte at offset {exc.start})") from None
    try:
        value = json.loads(text, parse_int=_parse_int)
    except json.JSONDecodeError as exc:
        raise MalformedJson(f"{exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:  # the C scanner's own guard, far deeper than MAX_DEPTH
        raise ValidationFailed(loc, f"nested more than {MAX_DEPTH} levels deep") from None
    reject(check(value, loc))
    return value


def check(value: Any, loc: Loc) -> list[Issue]:
    """The problems of one JSON-like value: ``[{"loc", "message"}]`` (at most 20), empty if
    it is fine. Strings, keys, numbers and nesting are checked; other types pass."""
    issues: list[Issue] = []
    if type(value) is dict or type(value) is list:
        _walk(value, loc, 1, issues)
    elif problem := _problem(value):
        issues.append({"loc": loc, "message": problem})
    return issues


def check_pairs(where: str, pairs: Iterable[tuple[str, Any]]) -> list[Issue]:
    """Check named text parameters (query, path): key and value, located ``[where, key]``."""
    issues: list[Issue] = []
    for key, value in pairs:
        if problem := text_problem(key):
            issues.append({"loc": [where, _escaped(key)], "message": f"name {problem}"})
        else:
            issues.extend(check(value, [where, key]))
    return issues[:_MAX_ISSUES]


def check_form(form: FormData) -> None:
    """Check a parsed form (urlencoded or multipart): every field name and text value, and
    the file name and content type of uploads (they are stored with the message).

    Raises:
        ValidationFailed: 422, located ``["body", field]``.
    """
    pairs: list[tuple[str, Any]] = []
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            pairs.append((key, {"filename": value.filename, "content_type": value.content_type}))
        else:
            pairs.append((key, value))
    reject(check_pairs("body", pairs))


def check_header(name: str, value: str) -> str:
    """Return a header value if it is printable ASCII (what every header this API reads is:
    keys, signatures, ids); ``name`` is the lower-case header name.

    Raises:
        InvalidHeader: 400. Servers decode header bytes as Latin-1, so any byte over 0x7f
            arrives as a character that ``hmac.compare_digest`` or ``int()`` would choke on.
    """
    if not (value.isascii() and value.isprintable()):
        raise InvalidHeader(name, "must be printable ASCII")
    return value


def reject(issues: list[Issue]) -> None:
    """Raise the problems found, if any.

    Raises:
        ValidationFailed: 422 with every issue in ``details``.
    """
    if issues:
        first, *more = issues
        raise ValidationFailed(first["loc"], first["message"], more=more)


@contextmanager
def webhook_payload() -> Iterator[None]:
    """Report the boundary's rejections of a verified webhook as 400 ``invalid_payload`` (with
    the same ``details``), like the webhook's other payload errors.

    Raises:
        InvalidPayload: 400.
    """
    try:
        yield
    except (MalformedJson, ValidationFailed) as exc:
        raise InvalidPayload(exc.message, details=exc.details) from None


def _parse_int(literal: str) -> object:
    return int(literal) if len(literal) <= _INT_CHARS else _OUT_OF_RANGE


def _walk(container: dict[Any, Any] | list[Any], loc: Loc, level: int, issues: list[Issue]) -> None:
    """Check a dict or list at nesting ``level`` (the body itself is level 1). Locations are
    built only for containers and problems: a large clean body costs one pass, no lists."""
    if level > MAX_DEPTH:
        issues.append({"loc": loc, "message": f"nested more than {MAX_DEPTH} levels deep"})
        return
    pairs = container.items() if type(container) is dict else enumerate(container)
    for key, item in pairs:
        if len(issues) >= _MAX_ISSUES:
            return
        if type(key) is str and (problem := text_problem(key)):
            issues.append({"loc": [*loc, _escaped(key)], "message": f"key {problem}"})
        elif type(item) is dict or type(item) is list:
            _walk(item, [*loc, key], level + 1, issues)
        elif problem := _problem(item):
            issues.append({"loc": [*loc, key], "message": problem})


def _problem(value: Any) -> str | None:
    """What is wrong with a scalar, if anything."""
    if type(value) is str:
        return text_problem(value)
    if type(value) is float and not math.isfinite(value):
        return "must be a finite number (no NaN, Infinity or 1e400)"
    if value is _OUT_OF_RANGE or (type(value) is int and not INT_MIN <= value <= INT_MAX):
        return "integer outside the signed 64-bit range"
    return None


def _escaped(key: str) -> str:
    """A bad key as it can appear in an error body (escapes, never raw NUL or surrogates)."""
    return key.encode("unicode_escape").decode("ascii")

"""What a JSON value must be for PostgreSQL to store it and for us to read it back.

``jsonb`` (and ``text``) cannot hold NUL characters (``\\u0000``) or unpaired UTF-16 surrogates
(psycopg cannot even encode them); JSON has no NaN or Infinity; Python refuses to turn integers
of more than 4300 digits into text (``sys.set_int_max_str_digits``) and to parse JSON nested
deeper than its recursion limit. A value with any of these, written anyway, fails the statement
— or worse, is stored and then cannot be loaded again.

:func:`check` finds the first such problem and its path (for data that must be stored exactly:
step outputs); :func:`as_stored` is a checked value as it reads back (what a run continues
with, so a replay sees the same); :func:`scrub` replaces every problem with something printable
(for diagnostics such as error details, where a readable approximation beats losing the
record).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any

#: Deepest nesting of objects and arrays.
MAX_DEPTH = 64
#: Largest integer, in bits (about 1200 decimal digits; Python's limit for text is 4300).
MAX_INT_BITS = 4_096
#: Largest value, in (approximate) bytes of JSON; the limit Inngest sets for data returned by a
#: step (https://www.inngest.com/docs/usage-limits/inngest, "Payload Size").
MAX_BYTES = 4 * 1024 * 1024

_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")
_JSON_KEYS = (str, int, float, bool, type(None))  # what json.dumps turns into an object key
_REPLACEMENT = "\ufffd"

Path = tuple[str | int, ...]


class Unstorable(ValueError):
    """Why a value cannot be stored, and where: ``path`` as keys and indexes from the root."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(path, reason)
        self.path = path
        self.reason = reason

    def describe(self, root: str = "") -> str:
        """``"<root>.a.b[2]: <reason>"``; ``root`` names the whole value (e.g. ``output``)."""
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{scrub(p)[:64]}" for p in self.path)
        return f"{(root + where).lstrip('.') or 'the value'}: {self.reason}"

    def __str__(self) -> str:
        return self.describe()


def text_problem(text: str) -> str | None:
    """Why PostgreSQL cannot store ``text``, or None when it can."""
    bad = _BAD_TEXT.search(text)
    if bad is None:
        return None
    if bad.group() == "\x00":
        return "contains NUL (\\u0000), which PostgreSQL cannot store"
    return "contains a lone surrogate (\\ud800-\\udfff), which is not Unicode text"


def _problems(value: Any, max_bytes: int) -> Iterator[Unstorable]:
    """Walk ``value`` iteratively (no recursion limit to hit) and yield its problems."""
    size = 0
    stack: list[tuple[Any, Path]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            size += len(item) + 2
            reason = text_problem(item)
            if reason:
                yield Unstorable(path, reason)
        elif isinstance(item, bool) or item is None:
            size += 4
        elif isinstance(item, int):
            size += 8
            if item.bit_length() > MAX_INT_BITS:
                yield Unstorable(path, f"integer over {MAX_INT_BITS} bits")
        elif isinstance(item, float):
            size += 8
            if not math.isfinite(item):
                yield Unstorable(path, f"{item} is not a JSON number")
        elif isinstance(item, dict | list | tuple):
            if len(path) >= MAX_DEPTH:
                yield Unstorable(path, f"nested more than {MAX_DEPTH} levels deep")
                continue
            size += 2
            if isinstance(item, dict):
                for key, child in item.items():
                    key_text = str(key)
                    size += len(key_text) + 4
                    reason = text_problem(key_text)
                    if reason:
                        yield Unstorable((*path, key_text), f"key {reason}")
                    elif not isinstance(key, _JSON_KEYS):
                        yield Unstorable((*path, key_text), "key is not text or a number")
                    stack.append((child, (*path, key_text)))
            else:
                stack.extend((child, (*path, i)) for i, child in enumerate(item))
        else:  # datetimes, decimals from vendor SDKs: stored as their text
            stack.append((str(item), path))
        if size > max_bytes:
            yield Unstorable((), f"larger than {max_bytes // (1024 * 1024)} MB")
            return


def check(value: Any, *, max_bytes: int = MAX_BYTES) -> None:
    """Raise if ``value`` cannot be stored as JSON in PostgreSQL and read back unchanged.

    Raises:
        Unstorable: the first problem found, with its path.
    """
    for problem in _problems(value, max_bytes):
        raise problem


def dumps(value: Any) -> str:
    """The JSON text a value is stored as: anything JSON has no type for (datetimes and
    decimals from vendor SDKs, a template's ``range``) as its ``str()``; object keys that are
    numbers as text.

    Raises:
        TypeError, ValueError: on what :func:`check` refuses.
    """
    return json.dumps(value, default=str)


def as_stored(value: Any) -> Any:
    """``value`` as it reads back from the database, for a value :func:`check` accepted.

    A run continues with this rather than with the value a step returned, so that a step's
    output is the same whether it was just computed or replayed from its checkpoint (a tuple
    is a list, ``{1: "a"}`` is ``{"1": "a"}``, a datetime is its text).
    """
    return json.loads(dumps(value))


def scrub(value: Any, *, depth: int = 0) -> Any:
    """A storable approximation of ``value``: bad characters become U+FFFD, NaN and
    infinities and huge integers become text, structure past :data:`MAX_DEPTH` becomes
    ``"…"``. Meant for diagnostics (errors, failed inputs), not for data."""
    if isinstance(value, str):
        return _BAD_TEXT.sub(_REPLACEMENT, value) if _BAD_TEXT.search(value) else value
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        bits = value.bit_length()
        return value if bits <= MAX_INT_BITS else f"<integer of {bits} bits>"
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if depth >= MAX_DEPTH:
        return "…"
    if isinstance(value, dict):
        return {scrub(str(k)): scrub(v, depth=depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v, depth=depth + 1) for v in value]
    return scrub(str(value))

"""Jinja2's sandbox with budgets: no template can hog the event loop or the memory.

Templates come from blueprints (users and the architect's model) and evaluate data from webhooks
and external servers, so every one of them is hostile until proven otherwise. On top of Jinja2's
``SandboxedEnvironment`` (no private attributes, no ``eval``) this environment:

- **checks the shape at compile time**: source length, nesting depth (checked before the
  recursive parser and compiler see it), and the statements a parameter template may use —
  ``if``, ``for`` (not recursive), ``set``, ``with``, ``filter`` blocks; no macros, call
  blocks, includes, imports or inheritance;
- **counts operations** while evaluating: every loop iteration, call, filter, intercepted
  operator and item access ticks one :class:`Budget` per evaluation (one step's params, one
  condition), limited to :data:`MAX_OPERATIONS` and :data:`MAX_CPU_SECONDS` of thread CPU time;
- **bounds sizes before allocating**: ``*`` and ``+`` on strings and lists, ``**`` and ``*`` on
  integers, ``%`` formatting (widths, and what the arguments expand to), ``~`` concatenation,
  and the amplifying filters (``center``, ``indent``, ``format``, ``replace``, ``batch``,
  ``slice``, ``tojson``, ``join``) are checked against :data:`MAX_VALUE_CHARS` /
  :data:`MAX_ITEMS` / :data:`MAX_INT_BITS`, and everything produced counts against
  :data:`MAX_TOTAL_CHARS` (rendered text included). Turning a list or object into text is
  sized first (:func:`_text_size`): a list can hold one long string ten thousand times;
- **bounds the time of one operation**: a filter that walks a string or an iterator item by
  item (``list``, ``select``, ``join``, ``batch``…) counts every item as an operation, and the
  text filters that loop in Python (``wordwrap``, ``title``, ``indent``, ``striptags``) count
  the words, lines or tags they will visit before they run — the clock is only read between
  operations, so no single operation may be long;
- **allows only listed methods** (``str.upper``, ``dict.get``…; no ``str.format``, no list
  mutation) and globals (``range`` up to :data:`MAX_OPERATIONS`, ``dict``); ``random`` is gone
  because a replayed template must give the same result.

Breaking a budget raises :class:`BudgetExceeded`; ``expressions`` reports it, like any other
failure of a template, as an ``expression_error`` of the node.
"""

from __future__ import annotations

import gc
import itertools
import math
import re
import time
import types
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sized
from contextlib import contextmanager
from contextvars import ContextVar
from functools import wraps
from typing import Any, cast

from jinja2 import StrictUndefined, nodes
from jinja2.ext import Extension
from jinja2.filters import FILTERS
from jinja2.lexer import (
    TOKEN_LBRACE,
    TOKEN_LBRACKET,
    TOKEN_LPAREN,
    TOKEN_RBRACE,
    TOKEN_RBRACKET,
    TOKEN_RPAREN,
)
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment
from jinja2.visitor import NodeTransformer

#: Longest template string (characters) a blueprint may hold.
MAX_TEMPLATE_CHARS = 65_536
#: Most lexer tokens (names, operators, literals, text runs) in one template string.
MAX_TEMPLATE_TOKENS = 1_000
#: Deepest nesting of brackets and of the expression tree.
MAX_NESTING = 40
#: Loop iterations + calls + filters + intercepted operators per evaluation.
MAX_OPERATIONS = 10_000
#: Thread CPU time one evaluation may take (a backstop for operations on large values).
MAX_CPU_SECONDS = 0.01
#: Longest string, and most characters in all produced values together, per evaluation.
MAX_VALUE_CHARS = 1_000_000
MAX_TOTAL_CHARS = 4_000_000
#: Most items in a list a template builds, or a filter sorts, groups or fills.
MAX_ITEMS = 10_000
#: Largest integer a template may compute (about 1233 decimal digits).
MAX_INT_BITS = 4_096
#: Widths in ``center``/``indent``/``%`` formatting and ``tojson`` indents.
MAX_WIDTH = 1_000
#: Deepest value a template may turn into text (data is at most 64 deep, templates 40 more).
_MAX_TEXT_DEPTH = 128
_SCALARS = frozenset({float, bool, type(None)})

_OPENERS = frozenset({TOKEN_LPAREN, TOKEN_LBRACKET, TOKEN_LBRACE})
_CLOSERS = frozenset({TOKEN_RPAREN, TOKEN_RBRACKET, TOKEN_RBRACE})
_FORBIDDEN_STATEMENTS: dict[type[nodes.Node], str] = {
    nodes.Macro: "macros",
    nodes.CallBlock: "call blocks",
    nodes.Include: "include",
    nodes.Import: "import",
    nodes.FromImport: "import",
    nodes.Extends: "extends",
    nodes.Block: "blocks",
}
# fmt: off
_STR_METHODS = frozenset({
    "capitalize", "casefold", "count", "endswith", "find", "index", "isalnum", "isalpha",
    "isdecimal", "isdigit", "islower", "isnumeric", "isspace", "istitle", "isupper", "join",
    "lower", "lstrip", "partition", "removeprefix", "removesuffix", "replace", "rfind", "rindex",
    "rpartition", "rsplit", "rstrip", "split", "splitlines", "startswith", "strip", "swapcase",
    "title", "upper",
})
# fmt: on
#: Methods a template may call on data, per type (other types of data offer none; objects
#: that are not data, such as ``loop``, keep the sandbox's rules).
_SAFE_METHODS: dict[type, frozenset[str]] = {
    str: _STR_METHODS,
    dict: frozenset({"get", "items", "keys", "values"}),
    list: frozenset({"count", "index"}),
    tuple: frozenset({"count", "index"}),
    int: frozenset(),
    float: frozenset(),
}
_PRINTF_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")


class BudgetExceeded(Exception):
    """A template went over one of the limits above; ``str()`` says which."""


class _GarbageCollectorClock:
    """Seconds the garbage collector ran, so a collection that happens to run during an
    evaluation is not charged to the template."""

    seconds = 0.0
    _started = 0.0

    @classmethod
    def track(cls, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            cls._started = time.perf_counter()
        else:
            cls.seconds += time.perf_counter() - cls._started


gc.callbacks.append(_GarbageCollectorClock.track)


class Budget:
    """What one evaluation has spent: operations, produced characters, CPU time."""

    __slots__ = ("chars", "cpu_deadline", "gc_seconds", "ops", "wall_deadline")

    def __init__(self) -> None:
        self.ops = 0
        self.chars = 0
        self.cpu_deadline = time.thread_time() + MAX_CPU_SECONDS
        self.wall_deadline = time.perf_counter() + MAX_CPU_SECONDS
        self.gc_seconds = _GarbageCollectorClock.seconds

    def tick(self, count: int = 1) -> None:
        """Count ``count`` operations (default one).

        The clock is read every time, cheaply: CPU time never runs ahead of wall time, so the
        (costly) thread CPU clock is read only once the wall clock says the time may be up.

        Raises:
            BudgetExceeded: too many operations, or out of CPU time.
        """
        self.ops += count
        if self.ops > MAX_OPERATIONS:
            raise BudgetExceeded(f"the template does more than {MAX_OPERATIONS} operations")
        now = time.perf_counter()
        if now > self.wall_deadline:
            collecting = _GarbageCollectorClock.seconds - self.gc_seconds
            left = self.cpu_deadline + collecting - time.thread_time()
            if left <= 0:
                raise BudgetExceeded(
                    f"the template takes more than {MAX_CPU_SECONDS * 1000:g} ms to evaluate"
                )
            self.wall_deadline = now + left

    def produce(self, size: int) -> None:
        """Count a value of ``size`` characters (or items) that is about to be built.

        Raises:
            BudgetExceeded: the value, or all values together, would be too large.
        """
        if size > MAX_VALUE_CHARS:
            raise BudgetExceeded(
                f"the template builds a value of {size} characters (limit {MAX_VALUE_CHARS})"
            )
        self.chars += size
        if self.chars > MAX_TOTAL_CHARS:
            raise BudgetExceeded(
                f"the template produces more than {MAX_TOTAL_CHARS} characters in all"
            )


_budget: ContextVar[Budget | None] = ContextVar("template_budget", default=None)


@contextmanager
def budgeted() -> Iterator[Budget]:
    """Give the evaluations inside the block one fresh :class:`Budget`."""
    budget = Budget()
    token = _budget.set(budget)
    try:
        yield budget
    finally:
        _budget.reset(token)


def _current() -> Budget:
    budget = _budget.get()
    if budget is None:  # compile-time constant folding, or a caller that forgot: fresh one
        return Budget()
    return budget


def _size(value: Any) -> int:
    return len(value) if isinstance(value, str | list | tuple | dict) else 0


def _text_size(value: Any) -> int:
    """A lower bound of ``len(str(value))``, found without building the text and without
    walking past :data:`MAX_VALUE_CHARS`: a container may hold one long string many times
    (``[s] * 10000``), so its text can be far larger than anything the template produced.
    A container met again is not walked again (its size is remembered)."""
    sizes: dict[int, int] = {}

    def size_of(item: Any, depth: int) -> int:
        kind = type(item)
        if kind is str or isinstance(item, str):
            return len(item)
        if kind is int:
            return int(item.bit_length()) * 3 // 10 + 1  # decimal digits: log10(2) > 0.3
        if kind in _SCALARS or not isinstance(item, Collection):
            return 1
        if (known := sizes.get(id(item))) is not None:
            return known
        if depth > _MAX_TEXT_DEPTH:
            raise BudgetExceeded(f"the template turns into text a value nested over {depth} deep")
        total = 2 + 2 * len(item)  # brackets, and ", " or ": " per item
        children = (
            itertools.chain.from_iterable(item.items()) if isinstance(item, Mapping) else item
        )
        for child in children:
            kind = type(child)  # scalars inline: a list of 10 000 numbers is common data
            if kind is str:
                total += len(child)
            elif kind is int:
                total += child.bit_length() * 3 // 10 + 1
            elif kind in _SCALARS:
                total += 1
            else:
                total += size_of(child, depth + 1)
            if total > MAX_VALUE_CHARS:
                break
        sizes[id(item)] = total  # the item is alive (value holds it): its id is not reused
        return total

    return size_of(value, 0)


def _check_text(value: Any, what: str = "text") -> int:
    """Refuse a value whose text would be over :data:`MAX_VALUE_CHARS`, before ``str()``.

    Returns:
        the (lower bound of the) text's length.
    """
    size = _text_size(value)
    if size > MAX_VALUE_CHARS:
        raise BudgetExceeded(
            f"the template turns into {what} a value of over {MAX_VALUE_CHARS} characters"
        )
    return size


def _items(size: int, what: str) -> None:
    if size > MAX_ITEMS:
        raise BudgetExceeded(f"{what} of {size} items is over the limit of {MAX_ITEMS}")


def _width(value: Any, what: str) -> None:
    width = len(value) if isinstance(value, str) else value
    if isinstance(width, int) and width > MAX_WIDTH:
        raise BudgetExceeded(f"{what} {width} is over the limit of {MAX_WIDTH}")


def _printf_widths(fmt: str) -> int:
    """Check the widths of ``%`` conversions in ``fmt``; return how many conversions it has."""
    specs = 0
    for match in _PRINTF_SPEC.finditer(fmt):
        specs += 1
        for number in match.groups():
            if number == "*":
                raise BudgetExceeded("'*' widths are not allowed in % formatting")
            if number is not None:
                _width(int(number), "a formatting width of")
    return specs


def _int_bits(bits: int) -> None:
    if bits > MAX_INT_BITS:
        raise BudgetExceeded(
            f"the template computes an integer of about {bits} bits (limit {MAX_INT_BITS})"
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _repeat(seq: Any, count: Any) -> None:
    if _is_int(count) and isinstance(seq, str | list | tuple):
        total = len(seq) * max(count, 0)
        if not isinstance(seq, str):
            _items(total, "a repeated list")
        _current().produce(total)


def _check_mul(left: Any, right: Any) -> None:
    if _is_int(left) and _is_int(right):
        _int_bits(left.bit_length() + right.bit_length())
    _repeat(left, right)
    _repeat(right, left)


def _check_pow(left: Any, right: Any) -> None:
    if _is_int(left) and _is_int(right) and right > 0 and abs(left) > 1:
        _int_bits(math.ceil(right * math.log2(abs(left))))


def _check_add(left: Any, right: Any) -> None:
    if isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
        total = len(left) + len(right)
        if not isinstance(left, str):
            _items(total, "a joined list")
        _current().produce(total)


def _check_mod(left: Any, right: Any) -> None:
    if isinstance(left, str):
        _check_printf(left, right)


def _check_printf(fmt: str, args: Any) -> None:
    """``fmt % args``: widths are bounded, and the result's size is known before it is built
    (with a mapping, every ``%(key)s`` may expand the same long value again)."""
    specs = _printf_widths(fmt)
    arg_chars = _check_text(args, "formatted text")
    repeats = specs if isinstance(args, Mapping) else 1
    _current().produce(len(fmt) + repeats * arg_chars + specs * MAX_WIDTH)


_BINOP_CHECKS: dict[str, Callable[[Any, Any], None]] = {
    "*": _check_mul,
    "**": _check_pow,
    "+": _check_add,
    "%": _check_mod,
}


# -- filters -------------------------------------------------------------------------------


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[index] if len(args) > index else None


def _pre_join(items: Any, separator: Any) -> None:
    if isinstance(items, list | tuple):
        _items(len(items), "joining a list")
        gaps = max(len(items) - 1, 0) * _text_size(separator)
        _current().produce(sum(map(_check_text, items)) + gaps)


def _pre_replace(text: Any, old: Any, new: Any, count: Any = None) -> None:
    if isinstance(text, str) and isinstance(old, str) and isinstance(new, str):
        hits = text.count(old) if old else len(text) + 1
        if _is_int(count) and count >= 0:
            hits = min(hits, count)
        _current().produce(len(text) + hits * max(len(new) - len(old), 0))


#: Filters a template may use, each with a check run on its arguments before it runs
#: (``args`` start with the filtered value; environment/context arguments are not included).
_FILTER_CHECKS: dict[str, Callable[[tuple[Any, ...], dict[str, Any]], None] | None] = {
    "abs": None,
    "attr": None,
    "batch": lambda a, k: _items(_arg(a, k, 1, "linecount") or 0, "a batch"),
    "capitalize": None,
    "center": lambda a, k: _width(_arg(a, k, 1, "width"), "a center width of"),
    "count": None,
    "d": None,
    "default": None,
    "dictsort": None,
    "e": None,
    "escape": None,
    "filesizeformat": None,
    "first": None,
    "float": None,
    "format": lambda a, k: _check_printf(str(a[0]), k or a[1:]) if a else None,
    "groupby": None,
    "indent": lambda a, k: _pre_indent(a[0] if a else "", _arg(a, k, 1, "width")),
    "int": None,
    "items": None,
    "join": lambda a, k: _pre_join(a[0] if a else None, _arg(a, k, 1, "d") or ""),
    "last": None,
    "length": None,
    "list": None,
    "lower": None,
    "map": None,
    "max": None,
    "min": None,
    "reject": None,
    "rejectattr": None,
    "replace": lambda a, k: _pre_replace(
        a[0] if a else None, _arg(a, k, 1, "old"), _arg(a, k, 2, "new"), _arg(a, k, 3, "count")
    ),
    "reverse": None,
    "round": None,
    "select": None,
    "selectattr": None,
    "slice": lambda a, k: _items(_arg(a, k, 1, "slices") or 0, "slicing into a number"),
    "sort": None,
    "string": None,
    "striptags": lambda a, k: _lines_of_work(a[0] if a else "", "<&"),
    "sum": lambda a, k: _sum_numbers(_arg(a, k, 2, "start")),
    "title": lambda a, k: _lines_of_work(a[0] if a else "", " \t\n-([{<"),
    "tojson": lambda a, k: _pre_tojson(a[0] if a else None, _arg(a, k, 1, "indent")),
    "trim": None,
    "truncate": None,
    "unique": None,
    "upper": None,
    "urlencode": None,
    "wordcount": None,
    "wordwrap": lambda a, k: _lines_of_work(a[0] if a else "", " \t\n-"),
}


def _pre_indent(text: Any, width: Any) -> None:
    _width(width, "an indent of")
    if isinstance(text, str):
        lines = text.count("\n") + 1
        _current().tick(lines)
        pad = len(width) if isinstance(width, str) else width if _is_int(width) else 0
        _current().produce(len(text) + lines * max(pad, 0))


def _pre_tojson(value: Any, indent: Any) -> None:
    _width(indent, "a JSON indent of")
    _check_text(value, "JSON")


def _lines_of_work(text: Any, separators: str) -> None:
    """Count the pieces a filter that loops in Python over words or tags will visit (one
    per separator in ``text``) as operations, before it runs."""
    if isinstance(text, str):
        _current().tick(sum(map(text.count, separators)))


def _sum_numbers(start: Any) -> None:
    if start is not None and not isinstance(start, int | float):
        raise BudgetExceeded("sum only adds numbers")


#: Filters that do not walk their input, so any size of collection is fine.
_CONSTANT_TIME = frozenset({"attr", "count", "d", "default", "first", "last", "length"})
#: Filters that walk their input item by item (a string is a sequence of characters to them).
# fmt: off
_SEQUENCE_FILTERS = frozenset({
    "batch", "groupby", "join", "list", "map", "max", "min", "reject", "rejectattr", "select",
    "selectattr", "slice", "sort", "sum", "unique",
})
#: Filters that turn their input into text (a list or object first goes through ``str()``).
_TEXT_FILTERS = frozenset({
    "capitalize", "center", "e", "escape", "format", "indent", "lower", "replace", "string",
    "striptags", "title", "trim", "truncate", "upper", "urlencode", "wordcount", "wordwrap",
})
# fmt: on


def _counted(iterable: Iterable[Any], what: str) -> Iterator[Any]:
    """Walk ``iterable`` counting each item as an operation, up to :data:`MAX_ITEMS` items."""
    budget = _current()
    for count, item in enumerate(iterable, 1):
        _items(count, what)
        budget.tick()
        yield item


def _budgeted_filter(
    name: str,
    fn: Callable[..., Any],
    check: Callable[[tuple[Any, ...], dict[str, Any]], None] | None,
) -> Callable[..., Any]:
    first = 1 if getattr(fn, "jinja_pass_arg", None) is not None else 0
    walks = name not in _CONSTANT_TIME
    what = f"the '{name}' filter on a collection"

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        budget = _current()
        budget.tick()
        if walks and len(args) > first:
            value = args[first]
            if isinstance(value, Sized) and not isinstance(value, str):
                _items(len(value), what)
            if name in _TEXT_FILTERS and not isinstance(value, str):
                _check_text(value)
            elif (
                name in _SEQUENCE_FILTERS
                and isinstance(value, Iterable)
                and (isinstance(value, str) or not isinstance(value, Sized))
            ):
                args = (*args[:first], _counted(value, what), *args[first + 1 :])
        values = args[first:]
        if check is not None:
            check(values, kwargs)
        result = fn(*args, **kwargs)
        _produced(budget, result)
        return result

    return wrapper


def _produced(budget: Budget, value: Any) -> None:
    if isinstance(value, list | tuple):
        _items(len(value), "a list")
    budget.produce(_size(value))


# -- the environment -----------------------------------------------------------------------


class _BudgetHooks(Extension):
    """Runtime hooks the compile-time rewrite (:class:`_Rewrite`) points the template at."""

    identifier = "blueprint.budget"

    def iterate(self, iterable: Iterable[Any], body_chars: int) -> Iterator[Any]:
        """Count a ``for`` loop's iterations, and the literal text each one outputs."""
        budget = _current()
        for item in iterable:
            budget.tick()
            if body_chars:
                budget.produce(body_chars)
            yield item

    def concat(self, parts: list[Any]) -> str:
        """``a ~ b ~ c``, with the result's size checked before it is built."""
        _current().produce(sum(map(_check_text, parts)))
        return "".join(part if isinstance(part, str) else str(part) for part in parts)


class _Rewrite(NodeTransformer):
    """Route loops and ``~`` through :class:`_BudgetHooks`."""

    def _hook(self, name: str, *args: nodes.Expr) -> nodes.Call:
        attr = nodes.ExtensionAttribute(_BudgetHooks.identifier, name)
        return nodes.Call(attr, list(args), [], None, None)

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        body_chars = sum(len(d.data) for d in _literal_text(node.body))
        node.iter = self._hook("iterate", cast(nodes.Expr, node.iter), nodes.Const(body_chars))
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return self._hook("concat", nodes.List(node.nodes))


def _literal_text(body: list[nodes.Node]) -> Iterator[nodes.TemplateData]:
    for statement in body:
        yield from statement.find_all(nodes.TemplateData)
        if isinstance(statement, nodes.TemplateData):
            yield statement


class BudgetedEnvironment(SandboxedEnvironment):
    """The sandbox every template and condition is evaluated in (see the module docstring)."""

    intercepted_binops = frozenset(_BINOP_CHECKS)

    def __init__(self) -> None:
        super().__init__(
            undefined=StrictUndefined,
            autoescape=False,
            extensions=[_BudgetHooks],
            finalize=self._finalize,
        )
        self.globals = {"range": self._range, "dict": dict}
        self.filters = {
            name: _budgeted_filter(name, FILTERS[name], check)
            for name, check in _FILTER_CHECKS.items()
        }

    @staticmethod
    def _range(*args: int) -> range:
        numbers = range(*args)
        _items(len(numbers), "a range")
        return numbers

    @staticmethod
    def _finalize(value: Any) -> str:
        _current().produce(_check_text(value))
        return value if isinstance(value, str) else str(value)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        """Check the operands of ``* ** + %`` before the operator runs."""
        _current().tick()
        _BINOP_CHECKS[operator](left, right)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """Count the call; check ``str.join``/``str.replace`` arguments before they run."""
        budget = _current()
        budget.tick()
        if isinstance(__obj, types.BuiltinMethodType) and isinstance(__obj.__self__, str):
            if __obj.__name__ == "join" and args:
                items = args[0]
                if not isinstance(items, list | tuple):
                    items = list(_counted(items, "joining a sequence"))
                _pre_join(items, __obj.__self__)
                args = (items, *args[1:])
            elif __obj.__name__ == "replace":
                _pre_replace(__obj.__self__, *args[:3])
        result = super().call(__context, __obj, *args, **kwargs)
        _produced(budget, result)
        return result

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        """Besides the sandbox's rules, methods of data are allowed only when listed."""
        if not super().is_safe_attribute(obj, attr, value):
            return False
        if callable(value):
            for kind, allowed in _SAFE_METHODS.items():
                if isinstance(obj, kind):
                    return attr in allowed
        return True

    def wrap_str_format(self, value: Any) -> None:
        """``str.format`` is not offered at all (widths would be unbounded); use ``format``."""
        return None

    def getattr(self, obj: Any, attribute: str) -> Any:
        """``data.key`` prefers the key of a JSON object over a method of the same name
        (``order.items`` is the order's items, not ``dict.items``)."""
        _current().tick()
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        """Count the access; a slice's size is checked before it is copied."""
        _current().tick()
        if isinstance(argument, slice) and isinstance(obj, str | list | tuple):
            _current().produce(len(range(*argument.indices(len(obj)))))
        return super().getitem(obj, argument)


def measure(source: str) -> int:
    """Check a template string's length, bracket nesting and size before it is parsed (Jinja's
    parser and compiler recurse once per level, and compiling costs about 40 µs a token);
    return its number of lexer tokens.

    Raises:
        BudgetExceeded: with a message naming the limit.
    """
    if len(source) > MAX_TEMPLATE_CHARS:
        raise BudgetExceeded(
            f"the template is {len(source)} characters long (limit {MAX_TEMPLATE_CHARS})"
        )
    depth = tokens = 0
    for _, kind, _ in ENV.lex(source):
        tokens += 1
        if tokens > MAX_TEMPLATE_TOKENS:
            raise BudgetExceeded(f"the template has more than {MAX_TEMPLATE_TOKENS} tokens")
        if kind in _OPENERS:
            depth += 1
            if depth > MAX_NESTING:
                raise BudgetExceeded(f"brackets nest more than {MAX_NESTING} deep")
        elif kind in _CLOSERS:
            depth -= 1
    return tokens


def check_tree(tree: nodes.Template) -> None:
    """Check a parsed template's depth and statements.

    Raises:
        BudgetExceeded: too deep, or a statement templates may not use.
    """
    stack: list[tuple[nodes.Node, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_NESTING:
            raise BudgetExceeded(f"the expression nests more than {MAX_NESTING} levels deep")
        forbidden = _FORBIDDEN_STATEMENTS.get(type(node))
        if forbidden is not None:
            raise BudgetExceeded(f"{forbidden} are not supported in templates")
        if isinstance(node, nodes.For) and node.recursive:
            raise BudgetExceeded("recursive loops are not supported in templates")
        stack.extend((child, depth + 1) for child in node.iter_child_nodes())


def rewrite(tree: nodes.Template) -> nodes.Template:
    """Route a checked template's loops and ``~`` through the budget hooks (in place)."""
    rewritten: nodes.Template = _Rewrite().visit(tree)
    rewritten.set_environment(ENV)
    rewritten.set_lineno(1)
    return rewritten


ENV = BudgetedEnvironment()

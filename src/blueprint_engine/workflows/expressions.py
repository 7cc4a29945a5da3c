"""Templates and conditions, evaluated by Jinja2's sandbox with budgets (never ``eval``).

Params may hold references such as ``{{trigger_data.amount}}``, ``{{steps.send.output.sid}}``
or ``{{owner.phone}}`` (the run owner's profile: :class:`OwnerProfile`). A string that is
*only* one reference keeps the referenced value's type (``"{{trigger_data.amount}}"`` ->
``50000``); any other string is rendered as text.
Conditions (router ``when``, wait ``match``) are bare Jinja expressions such as
``trigger_data.amount >= 100000``.

Undefined names or fields raise :class:`ExpressionError` instead of rendering empty text, so a
typo fails loudly at the step that uses it. So does *every* other failure while compiling or
evaluating — a type error, an overflow, a budget of :mod:`~blueprint_engine.workflows.sandbox`
broken (too many operations, too large a value, too deep) — so a template can fail its node
but never the runner.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from jinja2 import TemplateSyntaxError, Undefined, UndefinedError, nodes
from jinja2.environment import Template, TemplateExpression

from blueprint_engine.workflows import sandbox
from blueprint_engine.workflows.sandbox import ENV, BudgetExceeded

#: Names a template may start from. ``event`` exists only inside a wait's ``match``.
CONTEXT_NAMES = frozenset({"trigger_data", "steps", "run", "owner"})

#: What ``owner`` holds: the profile of the user who owns the run (``PATCH /me``).
OWNER_FIELDS = ("display_name", "email", "phone")

_PURE_REFERENCE = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\{\{|\}\}).)*)\}\}\s*$", re.DOTALL)
_MAX_MESSAGE = 300


class ExpressionError(ValueError):
    """A template or condition failed to parse or evaluate; ``str()`` says why."""


class OwnerProfile(dict[str, Any]):
    """The ``owner`` of a template context: the fields of :data:`OWNER_FIELDS` that are set.

    A field the profile lacks is *undefined*, not ``None``: ``{{ owner.phone }}`` fails the
    step with a message that names the field and how to set it (nothing is sent to "None"),
    while ``owner.phone is defined`` and ``owner.phone | default(...)`` work as in Jinja.
    As JSON (``owner | tojson``, a wait's stored context) it is the fields that are set.
    """

    def __missing__(self, key: str) -> Any:
        if key not in OWNER_FIELDS:
            raise KeyError(key)
        return ENV.undefined(
            hint=f"owner.{key} is not set: the workflow owner's profile has no {key} (set it "
            "with PATCH /me, then retry the run)",
            obj=self,
            name=key,
        )


def owner_profile(profile: Mapping[str, Any] | None) -> OwnerProfile:
    """The ``owner`` template variable for a stored profile ``{"display_name", "email",
    "phone"}`` (values text or null; other keys are ignored)."""
    return OwnerProfile(
        {k: v for k, v in (profile or {}).items() if k in OWNER_FIELDS and v is not None}
    )


def is_template(value: str) -> bool:
    """Return True when ``value`` contains Jinja syntax (``{{ }}`` or ``{% %}``)."""
    return "{{" in value or "{%" in value


def _quote(source: str) -> str:
    source = source.strip()
    return repr(source if len(source) <= 80 else source[:77] + "...")


def _failure(source: str, exc: BaseException, kind: str = "template") -> ExpressionError:
    if isinstance(exc, TemplateSyntaxError):
        return ExpressionError(f"invalid {kind} {_quote(source)}: {exc.message or 'syntax'}")
    if isinstance(exc, RecursionError):
        reason = "the template nests too deeply"
    else:
        reason = str(exc) or type(exc).__name__
        if not isinstance(
            exc, BudgetExceeded | UndefinedError | LookupError | TypeError | ValueError
        ):
            reason = f"{type(exc).__name__}: {reason}"
    if len(reason) > _MAX_MESSAGE:
        reason = reason[: _MAX_MESSAGE - 3] + "..."
    return ExpressionError(f"{_quote(source)}: {reason}")


def _parse(source: str, expression: str | None = None) -> nodes.Template:
    """Parse after the shape checks; deep input never reaches the recursive parser.
    ``expression``: the bare expression ``source`` wraps (for messages)."""
    try:
        sandbox.measure(source)
        tree = ENV.parse(source)
        sandbox.check_tree(tree)
    except (TemplateSyntaxError, BudgetExceeded, RecursionError) as exc:
        if expression is None:
            raise _failure(source, exc) from None
        raise _failure(expression, exc, "expression") from None
    return tree


def _expression_tree(expr: str) -> tuple[nodes.Template, nodes.Expr]:
    tree = _parse("{{ " + expr + " }}", expr)
    body = tree.body
    if len(body) != 1 or not isinstance(body[0], nodes.Output) or len(body[0].nodes) != 1:
        raise ExpressionError(f"invalid expression {_quote(expr)}: one expression expected")
    return tree, body[0].nodes[0]


def _compile(source: str, tree: nodes.Template) -> Template:
    try:
        return ENV.from_string(sandbox.rewrite(tree))
    except (TemplateSyntaxError, RecursionError) as exc:  # unknown filter or test, ...
        raise _failure(source, exc) from None


@lru_cache(maxsize=4096)
def _compile_expression(expr: str) -> TemplateExpression:
    _, node = _expression_tree(expr)
    assign = nodes.Template([nodes.Assign(nodes.Name("result", "store"), node)])
    return TemplateExpression(_compile(expr, assign), undefined_to_none=False)


@lru_cache(maxsize=4096)
def _compile_template(source: str) -> Template:
    return _compile(source, _parse(source))


def _evaluate(expr: str, context: Mapping[str, Any]) -> Any:
    fn = _compile_expression(expr)  # cached: compiled before the budget starts
    try:
        value = fn(**context)
    except Exception as exc:
        raise _failure(expr, exc) from None
    if isinstance(value, Undefined):
        raise ExpressionError(f"{_quote(expr)}: {value._undefined_message}")
    return value


def _render_text(source: str, context: Mapping[str, Any]) -> str:
    template = _compile_template(source)
    parts: list[str] = []
    size = 0
    try:
        for part in template.generate(**context):
            size += len(part)
            if size > sandbox.MAX_VALUE_CHARS:
                raise BudgetExceeded(
                    f"the rendered text is over {sandbox.MAX_VALUE_CHARS} characters"
                )
            parts.append(part)
    except Exception as exc:
        raise _failure(source, exc) from None
    return "".join(parts)


def _render(value: Any, context: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        if not is_template(value):
            return value
        pure = _PURE_REFERENCE.match(value)
        if pure:
            return _evaluate(pure.group("expr"), context)
        return _render_text(value, context)
    if isinstance(value, dict):
        return {key: _render(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [_render(item, context) for item in value]
    return value


def evaluate(expr: str, context: Mapping[str, Any]) -> Any:
    """Evaluate a bare expression (``trigger_data.amount > 100``) against ``context``, within
    one budget (see :mod:`~blueprint_engine.workflows.sandbox`).

    Raises:
        ExpressionError: syntax error, undefined name/field, sandbox violation, broken
            budget, or any other error while evaluating.
    """
    _compile_expression(expr)
    with sandbox.budgeted():
        return _evaluate(expr, context)


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """Resolve every template inside ``value`` (dicts and lists are walked recursively), all
    within one budget.

    A string that is exactly one ``{{ reference }}`` returns the referenced value unchanged
    (numbers stay numbers, objects stay objects); other template strings render to text.

    Raises:
        ExpressionError: when any template fails; the message names the template.
    """
    for _, source in template_strings(value):  # compiling is not part of the budget
        pure = _PURE_REFERENCE.match(source)
        if pure:
            _compile_expression(pure.group("expr"))
        else:
            _compile_template(source)
    with sandbox.budgeted():
        return _render(value, context)


@lru_cache(maxsize=4096)
def cost(source: str, *, expression: bool = False) -> int:
    """How much compiling a template string (or a bare ``expression``) costs, in lexer tokens,
    checked against the per-template limits first.

    Raises:
        ExpressionError: too long, too many tokens, or brackets nested too deep.
    """
    try:
        return sandbox.measure("{{ " + source + " }}" if expression else source)
    except (TemplateSyntaxError, BudgetExceeded) as exc:
        raise _failure(source, exc, "expression" if expression else "template") from None


def check_template(source: str, *, allowed: Iterable[str] = CONTEXT_NAMES) -> set[str]:
    """Parse and compile a template string; return the node ids it references via ``steps``.

    Raises:
        ExpressionError: syntax error, unknown filter, too long or too deep, a statement
            templates may not use, a top-level name outside ``allowed``, or a field of
            ``owner`` that a profile does not have (:data:`OWNER_FIELDS`).
    """
    pure = _PURE_REFERENCE.match(source)
    if pure:
        return check_expression(pure.group("expr"), allowed=allowed)
    referenced = _inspect(_parse(source), source, set(allowed))
    _compile_template(source)
    return referenced


def check_expression(expr: str, *, allowed: Iterable[str] = CONTEXT_NAMES) -> set[str]:
    """Parse and compile a bare expression; return the node ids it references via ``steps``.

    Raises:
        ExpressionError: as :func:`check_template`.
    """
    tree, _ = _expression_tree(expr)
    referenced = _inspect(tree, expr, set(allowed))
    _compile_expression(expr)
    return referenced


def operands(expr: str, context: Mapping[str, Any]) -> dict[str, Any]:
    """The values a bare expression compares: each field read from a context name by constants
    (``trigger_data.amount``, ``steps.check.output['ok']``; the longest such chain, the object
    of a method call rather than the method), as ``{reference text: value}`` in reading order,
    all evaluated within one budget. References that do not resolve (undefined, a broken
    budget) are left out: this is a diagnostic and never fails.

    Raises:
        ExpressionError: the expression does not parse.
    """
    found: dict[str, Any] = {}
    with sandbox.budgeted():
        for text in _compiled_references(expr):
            try:
                found[text] = _evaluate(text, context)
            except ExpressionError:
                continue
    return found


@lru_cache(maxsize=4096)
def _compiled_references(expr: str) -> tuple[str, ...]:
    """The distinct references of :func:`operands` that compile, compiled (outside any
    budget) and cached."""
    _, root = _expression_tree(expr)
    compiled: list[str] = []
    for text in dict.fromkeys(_references(root)):
        try:
            _compile_expression(text)
        except ExpressionError:
            continue
        compiled.append(text)
    return tuple(compiled)


def _references(node: nodes.Node) -> Iterable[str]:
    """Maximal constant field chains below ``node`` that read at least one field."""
    if isinstance(node, nodes.Getattr | nodes.Getitem):
        text = _chain(node)
        if text is not None:
            yield text
            return
    if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr):
        yield from _references(node.node.node)  # the object, not its bound method
        for argument in (*node.args, *node.kwargs, node.dyn_args, node.dyn_kwargs):
            if argument is not None:
                yield from _references(argument)
        return
    for child in node.iter_child_nodes():
        yield from _references(child)


def _chain(node: nodes.Node) -> str | None:
    """``node`` as expression text when it is a name followed by constant field reads."""
    if isinstance(node, nodes.Name):
        return node.name if node.ctx == "load" else None
    if isinstance(node, nodes.Getattr):
        base = _chain(node.node)
        return None if base is None else f"{base}.{node.attr}"
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        key = node.arg.value
        if isinstance(key, str) or (isinstance(key, int) and not isinstance(key, bool)):
            base = _chain(node.node)
            return None if base is None else f"{base}[{key!r}]"
    return None


def template_strings(value: Any) -> Iterable[tuple[tuple[str | int, ...], str]]:
    """Yield ``(path, string)`` for every template string inside a JSON-like value."""
    if isinstance(value, str):
        if is_template(value):
            yield (), value
    elif isinstance(value, dict):
        for key, item in value.items():
            for path, text in template_strings(item):
                yield (key, *path), text
    elif isinstance(value, list):
        for index, item in enumerate(value):
            for path, text in template_strings(item):
                yield (index, *path), text


def fields_read(name: str, source: str, *, expression: bool = False) -> set[str]:
    """The fields a template (or a bare ``expression``) reads from the top-level ``name`` by a
    constant: ``owner.phone`` and ``owner['phone']`` give ``{"phone"}``; none when the
    template assigns ``name`` itself.

    Raises:
        ExpressionError: the template does not parse.
    """
    tree = _expression_tree(source)[0] if expression else _parse(source)
    if name in _assigned(tree):
        return set()
    return _fields(tree, name)


def _assigned(tree: nodes.Template) -> set[str]:
    return {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}


def _fields(tree: nodes.Template, name: str) -> set[str]:
    """Constant fields read from the top-level ``name`` (``name.x``, ``name['x']``)."""
    fields: set[str] = set()
    for attr in tree.find_all(nodes.Getattr):
        if isinstance(attr.node, nodes.Name) and attr.node.name == name:
            fields.add(attr.attr)
    for item in tree.find_all(nodes.Getitem):
        if (
            isinstance(item.node, nodes.Name)
            and item.node.name == name
            and isinstance(item.arg, nodes.Const)
        ):
            fields.add(str(item.arg.value))
    return fields


def _inspect(tree: nodes.Template, source: str, allowed: set[str]) -> set[str]:
    assigned = _assigned(tree)
    for name in tree.find_all(nodes.Name):
        if name.ctx == "load" and name.name not in allowed and name.name not in assigned:
            if name.name in ENV.globals:
                continue
            names = ", ".join(sorted(allowed))
            raise ExpressionError(
                f"{source!r} uses unknown name '{name.name}' (use one of: {names})"
            )
    if "owner" in allowed and "owner" not in assigned:
        unknown = _fields(tree, "owner") - set(OWNER_FIELDS)
        if unknown:
            raise ExpressionError(
                f"{source!r} uses owner.{min(unknown)}, which a profile does not have (use one "
                f"of: {', '.join(f'owner.{f}' for f in OWNER_FIELDS)})"
            )
    return _fields(tree, "steps")

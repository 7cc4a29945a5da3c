"""Templates and conditions, evaluated by Jinja2's sandbox (never ``eval``).

Params may hold references such as ``{{trigger_data.amount}}`` or
``{{steps.send.output.sid}}``. A string that is *only* one reference keeps the referenced
value's type (``"{{trigger_data.amount}}"`` -> ``50000``); any other string is rendered as text.
Conditions (router ``when``, wait ``match``) are bare Jinja expressions such as
``trigger_data.amount >= 100000``.

Undefined names or fields raise :class:`ExpressionError` instead of rendering empty text, so a
typo fails loudly at the step that uses it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

#: Names a template may start from. ``event`` exists only inside a wait's ``match``.
CONTEXT_NAMES = frozenset({"trigger_data", "steps", "run"})

_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
_PURE_REFERENCE = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\{\{|\}\}).)*)\}\}\s*$", re.DOTALL)


class ExpressionError(ValueError):
    """A template or condition failed to parse or evaluate; ``str()`` says why."""


def is_template(value: str) -> bool:
    """Return True when ``value`` contains Jinja syntax (``{{ }}`` or ``{% %}``)."""
    return "{{" in value or "{%" in value


@lru_cache(maxsize=4096)
def _compile_expression(expr: str) -> Any:
    try:
        return _env.compile_expression(expr, undefined_to_none=False)
    except TemplateSyntaxError as exc:
        raise ExpressionError(f"invalid expression {expr!r}: {exc.message}") from None


@lru_cache(maxsize=4096)
def _compile_template(source: str) -> Any:
    try:
        return _env.from_string(source)
    except TemplateSyntaxError as exc:
        raise ExpressionError(f"invalid template {source!r}: {exc.message}") from None


def evaluate(expr: str, context: Mapping[str, Any]) -> Any:
    """Evaluate a bare expression (``trigger_data.amount > 100``) against ``context``.

    Raises:
        ExpressionError: syntax error, undefined name/field, or a sandbox violation.
    """
    fn = _compile_expression(expr)
    try:
        value = fn(**context)
    except (UndefinedError, SecurityError, TypeError, ZeroDivisionError) as exc:
        raise ExpressionError(f"{expr.strip()!r}: {exc}") from None
    if _is_undefined(value):
        raise ExpressionError(f"{expr.strip()!r}: {value._undefined_message}")
    return value


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """Resolve every template inside ``value`` (dicts and lists are walked recursively).

    A string that is exactly one ``{{ reference }}`` returns the referenced value unchanged
    (numbers stay numbers, objects stay objects); other template strings render to text.

    Raises:
        ExpressionError: when any template fails; the message names the template.
    """
    if isinstance(value, str):
        if not is_template(value):
            return value
        pure = _PURE_REFERENCE.match(value)
        if pure:
            return evaluate(pure.group("expr"), context)
        template = _compile_template(value)
        try:
            return template.render(**context)
        except (UndefinedError, SecurityError, TypeError, ZeroDivisionError) as exc:
            raise ExpressionError(f"{value!r}: {exc}") from None
    if isinstance(value, dict):
        return {key: render(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [render(item, context) for item in value]
    return value


def check_template(source: str, *, allowed: Iterable[str] = CONTEXT_NAMES) -> set[str]:
    """Parse a template string and return the node ids it references through ``steps``.

    Raises:
        ExpressionError: syntax error, or a top-level name outside ``allowed``.
    """
    pure = _PURE_REFERENCE.match(source)
    if pure:
        return check_expression(pure.group("expr"), allowed=allowed)
    try:
        tree = _env.parse(source)
    except TemplateSyntaxError as exc:
        raise ExpressionError(f"invalid template {source!r}: {exc.message}") from None
    return _inspect(tree, source, set(allowed))


def check_expression(expr: str, *, allowed: Iterable[str] = CONTEXT_NAMES) -> set[str]:
    """Parse a bare expression and return the node ids it references through ``steps``.

    Raises:
        ExpressionError: syntax error, or a top-level name outside ``allowed``.
    """
    try:
        tree = _env.parse("{{ " + expr + " }}")
    except TemplateSyntaxError as exc:
        raise ExpressionError(f"invalid expression {expr!r}: {exc.message}") from None
    return _inspect(tree, expr, set(allowed))


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


def _inspect(tree: nodes.Template, source: str, allowed: set[str]) -> set[str]:
    assigned = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    for name in tree.find_all(nodes.Name):
        if name.ctx == "load" and name.name not in allowed and name.name not in assigned:
            if name.name in _env.globals:
                continue
            names = ", ".join(sorted(allowed))
            raise ExpressionError(
                f"{source!r} uses unknown name '{name.name}' (use one of: {names})"
            )
    referenced: set[str] = set()
    for attr in tree.find_all(nodes.Getattr):
        if isinstance(attr.node, nodes.Name) and attr.node.name == "steps":
            referenced.add(attr.attr)
    for item in tree.find_all(nodes.Getitem):
        if (
            isinstance(item.node, nodes.Name)
            and item.node.name == "steps"
            and isinstance(item.arg, nodes.Const)
        ):
            referenced.add(str(item.arg.value))
    return referenced


def _is_undefined(value: Any) -> bool:
    return isinstance(value, StrictUndefined)

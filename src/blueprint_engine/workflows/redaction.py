"""Redaction: the second line of defence between a step and everything that records it.

The first line is that secrets live in credentials, decrypted only inside the step that uses
them. Whatever a step records — its resolved input, its output, its error — still passes through
:class:`Redactor`, which replaces with ``"[redacted]"``:

- the value of any field whose name says it is secret (``Authorization``, ``api_key``,
  ``password``, ``x-auth-token``, ``client_secret``…, matched case- and dash-insensitively);
- the userinfo of URLs (``https://user:pass@host`` -> ``https://[redacted]@host``) and the values
  of secret-named query parameters in them (``?api_key=…``);
- every verbatim occurrence of the step's decrypted credential values, wherever they appear
  (an API that echoes the token back in its body, an error message quoting a URL).

:func:`literal_secrets` finds the same things written literally into a blueprint's params, which
validation refuses: a blueprint is stored and shown, so a secret there is a secret in clear.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import quote, quote_plus

REDACTED = "[redacted]"

#: Field names (lower case, ``-`` as ``_``) whose values are secrets.
SECRET_NAMES = frozenset(
    {
        "authorization",
        "proxy_authorization",
        "cookie",
        "set_cookie",
        "password",
        "passwd",
        "secret",
        "token",
        "api_key",
        "apikey",
        "x_api_key",
        "api_secret",
        "access_token",
        "refresh_token",
        "id_token",
        "auth_token",
        "client_secret",
        "private_key",
        "secret_key",
        "key_secret",
        "webhook_secret",
    }
)
_SECRET_SUFFIXES = ("_secret", "_token", "_password", "_api_key", "_apikey", "_private_key")

#: Deeper than this, a value is replaced whole (nothing unexamined is recorded).
MAX_DEPTH = 200
#: Credential values shorter than this are not searched for verbatim (a 2-character password
#: would blank out every occurrence of two letters); named fields still hide them.
MIN_VERBATIM = 4

_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/\s?#@]+)@")
_QUERY_PARAM = re.compile(r"(?i)([?&])([A-Za-z0-9_.~-]+)=([^&#\s\"']*)")


@functools.lru_cache(maxsize=4096)  # records repeat the same few keys
def is_secret_name(name: str) -> bool:
    """True for a field or header name that holds a secret (``X-API-Key``, ``db_password``)."""
    normal = name.strip().lower().replace("-", "_")
    return normal in SECRET_NAMES or normal.endswith(_SECRET_SUFFIXES)


#: Query parameters that carry secrets though, as field names, they mostly do not (``?key=`` of
#: Google's APIs, ``?sig=`` of signed URLs).
_SECRET_PARAMS = frozenset({"key", "sig", "signature", "auth", "access_key", "code"})


def is_secret_param(name: str) -> bool:
    """True for a query parameter whose value is a secret (``api_key``, ``token``, ``key``)."""
    return is_secret_name(name) or name.strip().lower().replace("-", "_") in _SECRET_PARAMS


class Redactor:
    """Replaces secrets in JSON-like values (dicts, lists, strings, scalars).

    Args:
        secrets: plain credential values to hide wherever they appear verbatim.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # as sent in a query string or a form too (``+`` ``/`` ``=`` of base64 keys encoded)
        forms = {
            form
            for secret in secrets
            for form in (secret, quote(secret, safe=""), quote_plus(secret, safe=""))
        }
        values = sorted({s for s in forms if len(s) >= MIN_VERBATIM}, key=len, reverse=True)
        self._verbatim = re.compile("|".join(map(re.escape, values))) if values else None

    def __call__(self, value: Any) -> Any:
        """A copy of ``value`` with secrets replaced by ``"[redacted]"`` (keys kept)."""
        return self._value(value, 0)

    def text(self, text: str) -> str:
        """``text`` with URL userinfo, secret query values and credential values replaced."""
        if self._verbatim is not None:
            text = self._verbatim.sub(REDACTED, text)
        if "@" in text and "://" in text:  # cheap tests first: most strings hold neither
            text = _USERINFO.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)
        if "=" in text and ("?" in text or "&" in text):
            text = _QUERY_PARAM.sub(_redact_param, text)
        return text

    def _value(self, value: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            return REDACTED
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {
                key: (
                    _hidden(item)
                    if isinstance(key, str) and is_secret_name(key)
                    else self._value(item, depth + 1)
                )
                for key, item in value.items()
            }
        if isinstance(value, list | tuple):
            return [self._value(item, depth + 1) for item in value]
        return value


def _hidden(value: Any) -> Any:
    """What a secret-named field shows: nothing to hide stays as it is (null, empty)."""
    return value if value is None or value == "" else REDACTED


def _redact_param(match: re.Match[str]) -> str:
    if not match.group(3) or not is_secret_param(match.group(2)):
        return match.group(0)
    return f"{match.group(1)}{match.group(2)}={REDACTED}"


def literal_secrets(params: Any) -> Iterator[tuple[list[str | int], str]]:
    """Where ``params`` hold a secret written literally: ``(path, what)`` for each
    secret-named field with a fixed (non-template) value, and each URL with literal userinfo.
    A template (``{{ trigger_data.token }}``) is allowed: it names where the value comes from.
    """
    stack: list[tuple[list[str | int], Any]] = [([], params)]
    while stack:
        path, value = stack.pop()
        if len(path) > MAX_DEPTH:
            continue
        if isinstance(value, dict):
            for key, item in value.items():
                here = [*path, key]
                if (
                    isinstance(key, str)
                    and is_secret_name(key)
                    and isinstance(item, str)
                    and item.strip()
                    and not _templated(item)
                ):
                    yield here, f"'{key}' holds a secret in clear"
                else:
                    stack.append((here, item))
        elif isinstance(value, list):
            stack.extend(([*path, i], item) for i, item in enumerate(value))
        elif isinstance(value, str):
            for match in _USERINFO.finditer(value):
                if not _templated(match.group(2)):
                    yield path, "the URL holds a user name or password in clear"
                    break
            for match in _QUERY_PARAM.finditer(value):
                name, item = match.group(2), match.group(3)
                if item and is_secret_param(name) and not _templated(item):
                    yield path, f"the URL's '{name}' parameter holds a secret in clear"
                    break


def _templated(text: str) -> bool:
    return "{{" in text or "{%" in text

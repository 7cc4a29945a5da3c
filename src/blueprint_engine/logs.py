"""Logging as operators expect it: one line per event, as JSON with ``LOG_FORMAT=json``.

Every module logs with the standard library (``logging.getLogger(__name__)``); the lines go
through structlog's ``ProcessorFormatter``, which adds what is known where the line is written:
``request_id`` (the ``X-Request-ID`` of the request being served, also on its response:
``asgi-correlation-id``), and ``run_id``, ``node_id``, ``trace_id`` (bound with
:func:`bound` by the engine around a run and each of its nodes). Uvicorn's own loggers are
routed the same way, so access lines carry the request id too.

JSON line: ``{"timestamp", "level", "logger", "event", "request_id"?, "run_id"?, "node_id"?,
"trace_id"?, "exception"?}``. Text: the same fields, ``key=value`` after the message.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any, Literal

import structlog
from asgi_correlation_id import correlation_id

#: Loggers that uvicorn configures with handlers of its own: routed to ours instead.
_UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.access")


def _request_id(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    request_id = correlation_id.get()
    if request_id:
        event.setdefault("request_id", request_id)
    return event


def _drop_unknown(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in [k for k, v in event.items() if v is None]:
        del event[key]
    return event


_HTTP_CLIENTS = ("httpx", "httpx2", "httpcore", "httpcore2")

#: A hook's path: its token is the hook's credential (POST /hooks/{workflow_id}/{token}); its
#: query string is the caller's and may carry a key of theirs (``?api_key=…``).
_HOOK_PATH = re.compile(r"^(/hooks/[^/?]*/)([^/?]{0,4})[^/?]*(\?.*)?$")


class HookTokenFilter(logging.Filter):
    """Uvicorn's access lines (``'%s - "%s %s HTTP/%s" %d'``: client, method, path, version,
    status) show a hook's path with only the token's first four characters, as the owner sees
    it (``/hooks/<id>/AbCd…``), and without its query string."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask the token in the record's path argument; never drops a line."""
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            masked = _HOOK_PATH.sub(r"\1\2…", args[2], count=1)
            if masked != args[2]:
                record.args = (*args[:2], masked, *args[3:])
        return True


def configure(log_format: Literal["text", "json"], level: str = "INFO") -> None:
    """Send every log line of the process (the root logger's and uvicorn's) to stderr in
    ``log_format``. Idempotent: replaces the handlers it installed before."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _request_id,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _drop_unknown,
    ]
    renderer: Any
    if log_format == "json":
        renderer = structlog.processors.JSONRenderer()
        shared.append(structlog.processors.dict_tracebacks)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    handler = logging.StreamHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    handler.set_name("blueprints")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "blueprints"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in _UVICORN:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    access = logging.getLogger("uvicorn.access")
    for installed in [f for f in access.filters if isinstance(f, HookTokenFilter)]:
        access.removeFilter(installed)
    access.addFilter(HookTokenFilter())
    # HTTP clients log every request's full URL at INFO, and a URL may carry a connection's
    # query key (http_query) or a user's literal one: keep them to warnings.
    for name in _HTTP_CLIENTS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))


@contextmanager
def bound(**context: Any) -> Iterator[None]:
    """Add ``context`` (e.g. ``run_id``, ``node_id``, ``trace_id``) to every log line written
    inside, in this task and the tasks it starts; None values are left out."""
    values = {k: str(v) for k, v in context.items() if v is not None}
    with structlog.contextvars.bound_contextvars(**values):
        yield

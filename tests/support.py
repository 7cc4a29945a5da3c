"""Test helpers: polling runs, executing blueprints, a counting local HTTP peer."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import heapq
import json
import re
import socket
import ssl
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from fastapi.testclient import TestClient

from blueprint_engine.config import Settings
from blueprint_engine.integrations.base import BaseTool, TaskParams, ToolContext
from blueprint_engine.integrations.credentials import Credential
from blueprint_engine.integrations.resources import ToolResources

TERMINAL = {"succeeded", "failed", "cancelled"}


def wait_for_run(
    client: TestClient,
    run_id: str,
    statuses: Collection[str] = TERMINAL,
    timeout: float = 15.0,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Poll GET /runs/{id} (as ``headers`` say) until the run reaches one of ``statuses``."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/runs/{run_id}", headers=headers)
        assert response.status_code == 200, response.text
        run = response.json()
        if run["status"] in statuses:
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run stayed {run['status']}: {json.dumps(run, indent=1)}")
        time.sleep(0.03)


def node_status(run: dict[str, Any]) -> dict[str, str]:
    return {node["id"]: node["status"] for node in run["nodes"]}


def chat_completion(content: str | None, finish_reason: str = "stop") -> dict[str, Any]:
    """An OpenAI chat.completion body whose assistant message is ``content``, stopped for
    ``finish_reason`` (``stop``, ``length``, ``content_filter``)."""
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "finish_reason": finish_reason,
                "logprobs": None,
                "message": {"role": "assistant", "content": content, "refusal": None},
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
    }


def execute(
    client: TestClient, blueprint: dict[str, Any], payload: Any = None, **extra: Any
) -> str:
    response = client.post(
        "/workflow/execute", json={"blueprint": blueprint, "payload": payload or {}, **extra}
    )
    assert response.status_code == 202, response.text
    run_id: str = response.json()["run_id"]
    return run_id


class Peer:
    """A threaded HTTP server on 127.0.0.1 (or ``host``, e.g. ``::1``; HTTPS with ``tls``) that
    counts requests per path.

    ``script[path]`` is a list of statuses to answer in turn (the last one repeats);
    ``handlers[path]`` overrides with a function ``(body) -> (status, json or bytes)`` or
    ``(status, json or bytes, headers)``, where a header set to None is left out (no
    content-length: the body ends when the connection closes); the body is parsed JSON, or raw
    bytes when it is not JSON.
    """

    def __init__(self, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        self.hits: Counter[str] = Counter()
        self.bodies: dict[str, list[Any]] = defaultdict(list)
        self.headers: dict[str, list[dict[str, str]]] = defaultdict(list)
        self.targets: dict[str, list[str]] = defaultdict(list)  # path -> request targets (?query)
        self.script: dict[str, list[int]] = {}
        self.handlers: dict[str, Callable[[Any], tuple[int, Any]]] = {}
        self.lock = threading.Lock()
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except (json.JSONDecodeError, UnicodeDecodeError):
                    body = raw  # multipart uploads and other non-JSON bodies
                path = self.path.split("?")[0]
                with peer.lock:
                    peer.hits[path] += 1
                    count = peer.hits[path]
                    peer.bodies[path].append(body)
                    peer.headers[path].append(dict(self.headers))
                    peer.targets[path].append(self.path)
                extra: dict[str, str | None] = {}
                if path in peer.handlers:
                    status, payload, *more = peer.handlers[path](body)
                    extra = more[0] if more else {}
                else:
                    statuses = peer.script.get(path, [200])
                    status = statuses[min(count, len(statuses)) - 1]
                    payload = {"path": path, "hit": count}
                raw_reply = isinstance(payload, bytes)
                data = payload if raw_reply else json.dumps(payload).encode()
                headers: dict[str, str | None] = {
                    "content-type": "application/octet-stream" if raw_reply else "application/json",
                    "content-length": str(len(data)),
                    **extra,
                }
                self.send_response(status)
                for name, value in headers.items():
                    if value is not None:
                        self.send_header(name, value)
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(data)

            do_GET = do_POST

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server_class = _IPv6Server if ":" in host else ThreadingHTTPServer
        self.server = server_class((host, 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://{f'[{host}]' if ':' in host else host}:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class FakeDNS:
    """Stands in for ``socket.getaddrinfo`` (install with monkeypatch): made-up names in
    ``answers`` resolve to a list of addresses per lookup, in turn (the last one repeats), and
    ``lookups`` counts them; every other name resolves for real."""

    def __init__(self) -> None:
        self.answers: dict[str, list[list[str]]] = {}
        self.lookups: Counter[str] = Counter()
        self._real = socket.getaddrinfo

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name not in self.answers:
            return self._real(host, port, *args, **kwargs)
        self.lookups[name] += 1
        turns = self.answers[name]
        addresses = turns[min(self.lookups[name], len(turns)) - 1]
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, int(port or 0), 0, 0))
            if ":" in a
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, int(port or 0)))
            for a in addresses
        ]


#: What a reply to a person must never contain: regexes, templates, validator or exception
#: vocabulary, machine error codes.
TECHNICAL = (
    "^",
    "\\w",
    "{{",
    "{%",
    "Error",
    "error",
    "pattern",
    "pydantic",
    "JSON",
    "schema",
    "params",
    "Traceback",
    "llm_",
    "validation",
    "http",
)


def assert_plain_words(text: str) -> None:
    """Fail when ``text`` (a reply to a WhatsApp or voice user) shows technical detail."""
    leaked = [word for word in TECHNICAL if word in text]
    assert not leaked, f"technical detail {leaked} in a reply to a person: {text!r}"


#: The Supabase JWT secret of the accounts fixtures (``conftest.accounts``).
JWT_SECRET = "test-supabase-jwt-secret-with-32-bytes-or-more"


def token_for(user_id: str, *, secret: str = JWT_SECRET, **claims: Any) -> str:
    """A Supabase-style access token (HS256) for ``user_id``; ``claims`` override the defaults
    (``aud`` authenticated, ``exp`` in an hour, ``role`` authenticated)."""
    payload = {
        "sub": user_id,
        "aud": "authenticated",
        "role": "authenticated",
        "exp": int(time.time()) + 3600,
        **claims,
    }
    return jwt.encode(payload, secret, algorithm="HS256")


def as_user(user_id: str) -> dict[str, str]:
    """Request headers that authenticate as ``user_id`` (with :data:`JWT_SECRET`)."""
    return {"Authorization": f"Bearer {token_for(user_id)}"}


#: The Inngest function id the API serves (app id + ``run-workflow``).
FN_ID = "blueprint-engine-run-workflow"


#: What an ``on_wait`` answer returns for a wait that no event resolves: it ends at its timeout.
TIMED_OUT = object()

_UNIT_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}


@dataclasses.dataclass(order=True)
class _Job:
    """A queue item of :class:`InngestServer`: a request due at ``due`` (virtual seconds)."""

    due: float
    seq: int
    kind: str = dataclasses.field(compare=False)  # discover | step | sleep | wait
    step_id: str = dataclasses.field(compare=False, default="")  # hashed id
    name: str = dataclasses.field(compare=False, default="")  # display name
    attempt: int = dataclasses.field(compare=False, default=0)
    mode: str = dataclasses.field(compare=False, default="wait")  # the op's parallelMode
    value: Any = dataclasses.field(compare=False, default=None)  # a wait's event


class InngestServer:
    """Plays the Inngest executor against ``POST /api/inngest``, on a virtual clock.

    Modelled on the server's executor (``pkg/execution/executor/executor.go``, 1.9.1 and
    later), request by request:

    - every ``StepPlanned`` op becomes a queue item that targets that step
      (``stepId=<hashed id>``) with its own attempt counter, from 0; a ``StepError`` (or an
      error response without ``x-inngest-no-retry``) retries that item with ``attempt + 1``,
      ``2**attempt`` seconds later, or at the time an error response's ``retry-after`` names
      (what ``inngest.RetryAfterError`` sends); on the last attempt (``max_attempts`` = the
      function's retries + 1, sent in ``ctx``) the SDK reports ``StepFailed`` instead. (The
      SDK's ``inngest.experimental.mocked`` harness keeps one attempt counter for the whole run
      and never resets it, so a step after a retried step starts at a later attempt there.)
    - ``Sleep`` ends ``duration`` later on the virtual clock (``now``); ``WaitForEvent`` ends
      when ``on_wait(op)`` returns an event (at once) or :data:`TIMED_OUT` (at its timeout).
      The mocked harness ends every sleep at once, so there a delay never holds anything.
    - an op handed out again (same step id) while it is queued or pending is dropped, as the
      server's queue job ids and pause ids do.
    - when a step, sleep or wait ends, a discovery request (no target) is queued if the op's
      ``opts.parallelMode`` is ``race``, or else (``wait``, the default) only once no other
      op handed out is still pending: the server's ``shouldEnqueueDiscovery``.

    The server sends requests concurrently; here they go one at a time in order of due time,
    then of queuing. ``trace`` lists every request and what it returned, for reading.
    """

    def __init__(self, client: TestClient, event: dict[str, Any], max_attempts: int = 5) -> None:
        self.client = client
        self.event = event
        self.max_attempts = max_attempts
        self.steps: dict[str, Any] = {}
        self.stack: list[str] = []
        self.responses: list[list[dict[str, Any]]] = []
        self.trace: list[str] = []
        self.now = 0.0
        self.failure: Any = None
        self.force_plan = False  # the server's ForceStepPlan after a parallel response
        self._queue: list[_Job] = []
        self._seq = 0
        self._queued: set[str] = set()  # job keys ever queued (step and pause ids dedupe)
        self._pending: set[str] = set()  # ops handed out that have not ended

    def call(self, step_id: str = "step", attempt: int = 0) -> Any:
        body = {
            "event": self.event,
            "events": [self.event],
            "steps": self.steps,
            "ctx": {
                "run_id": "01TESTRUN",
                "attempt": attempt,
                "max_attempts": self.max_attempts,
                "disable_immediate_execution": self.force_plan,
                "stack": {"stack": self.stack},
            },
            "use_api": False,
        }
        return self.client.post(f"/api/inngest?fnId={FN_ID}&stepId={step_id}", json=body)

    def memo(self, op: dict[str, Any], value: Any) -> None:
        self.steps[op["id"]] = value
        self.stack.append(op["id"])

    def _push(self, key: str, job: _Job) -> None:
        if key in self._queued:
            return
        self._queued.add(key)
        self._seq += 1
        job.seq = self._seq
        heapq.heappush(self._queue, job)

    def _ended(self, step_id: str, mode: str) -> None:
        """``step_id`` ended (its result is memoized): queue discovery as the server would."""
        self._pending.discard(step_id)
        if mode == "race" or not self._pending:
            self.force_plan = False
            self._push(f"discover:{step_id}", _Job(self.now, 0, "discover", step_id))

    def drive(self, on_wait: Any = None, limit: int = 200) -> Any:
        """Run until the function returns 200 (its output); a failed function leaves its
        error in ``failure`` and returns None. At most ``limit`` requests."""
        self._push("start", _Job(self.now, 0, "discover"))
        for _ in range(limit):
            job = heapq.heappop(self._queue)
            self.now = max(self.now, job.due)
            if job.kind in ("sleep", "wait"):  # a timer or an event ends a pause
                if job.step_id not in self.steps:
                    self.steps[job.step_id] = job.value
                    self.stack.append(job.step_id)
                    self._ended(job.step_id, job.mode)
                continue
            if job.kind == "step" and job.step_id in self.steps:
                continue
            target = job.step_id if job.kind == "step" else "step"
            response = self.call(target, job.attempt)
            what = f"{job.name} attempt {job.attempt}" if job.kind == "step" else "discovery"
            if response.status_code == 200:
                self.trace.append(f"t={self.now:>7.0f}s {what} -> 200 function finished")
                return response.json()
            if response.status_code != 206:
                retry = response.headers.get("x-inngest-no-retry") != "true"
                self.trace.append(f"t={self.now:>7.0f}s {what} -> {response.status_code}")
                if retry and job.attempt + 1 < self.max_attempts:
                    self._retry(job, response.headers.get("retry-after"))
                    continue
                self.failure = response.json()
                return None
            ops = response.json()
            self.responses.append(ops)
            self.trace.append(
                f"t={self.now:>7.0f}s {what} -> "
                + ", ".join(f"{op['op']} {op['displayName']} [{_mode(op)}]" for op in ops)
            )
            if len(ops) > 1:
                self.force_plan = True
            for op in ops:
                self._handle(job, op, on_wait)
            if not self._queue:
                raise AssertionError(f"nothing left to run:\n{self.trace_text()}")
        raise AssertionError(f"function did not finish in {limit} requests:\n{self.trace_text()}")

    def _retry(self, job: _Job, retry_after: str | None = None) -> None:
        """Queue ``job`` again with the next attempt: ``2**attempt`` seconds later, or when
        ``retry_after`` (an ISO time, as the SDK sends it) says."""
        delay = float(2**job.attempt)
        if retry_after is not None:
            until = datetime.fromisoformat(retry_after.replace("Z", "+00:00"))
            delay = max(0.0, (until - datetime.now(UTC)).total_seconds())
        self._seq += 1
        heapq.heappush(
            self._queue,
            dataclasses.replace(job, due=self.now + delay, seq=self._seq, attempt=job.attempt + 1),
        )

    def _handle(self, job: _Job, op: dict[str, Any], on_wait: Any) -> None:
        step_id, name, mode = op["id"], op["displayName"], _mode(op)
        if step_id in self.steps:
            return  # handed out again after it ended
        if op["op"] == "StepRun":
            self.memo(op, {"data": op.get("data")})
            self._ended(step_id, mode)
        elif op["op"] == "StepFailed":
            self.memo(op, {"error": op["error"]})
            self._ended(step_id, mode)
        elif op["op"] == "StepError":
            self._retry(job)
        elif op["op"] == "StepPlanned":
            self._pending.add(step_id)
            self._push(f"step:{step_id}", _Job(self.now, 0, "step", step_id, name, mode=mode))
        elif op["op"] == "Sleep":
            until = datetime.fromisoformat(op["name"].replace("Z", "+00:00"))
            seconds = max(0.0, (until - datetime.now(UTC)).total_seconds())
            self._pending.add(step_id)
            self._push(
                f"pause:{step_id}", _Job(self.now + seconds, 0, "sleep", step_id, name, mode=mode)
            )
        elif op["op"] == "WaitForEvent":
            if f"pause:{step_id}" in self._queued:
                return
            assert on_wait is not None, f"unexpected wait {op}"
            answer = on_wait(op)
            timed_out = answer is TIMED_OUT
            due = self.now + (_seconds(op["opts"]["timeout"]) if timed_out else 0)
            event = None if timed_out else answer
            self._pending.add(step_id)
            self._push(
                f"pause:{step_id}", _Job(due, 0, "wait", step_id, name, mode=mode, value=event)
            )
        elif op["op"] == "InvokeFunction":  # a child run of the same app, played to its end
            self._invoke(op, on_wait)
            self._ended(step_id, mode)
        else:
            raise AssertionError(f"opcode this server does not play: {op}")

    def _invoke(self, op: dict[str, Any], on_wait: Any) -> None:
        """Run the invoked function with ``inngest/function.invoked`` (its payload's data) on
        a server of its own; memoize its output, or its failure as the invoke's error."""
        payload = op["opts"]["payload"]
        event = {"name": "inngest/function.invoked", "data": payload["data"], "id": op["id"]}
        child = InngestServer(self.client, event, self.max_attempts)
        output = child.drive(on_wait=on_wait)
        self.trace.extend(f"  child: {line}" for line in child.trace)
        if child.failure is None:
            self.memo(op, {"data": output})
        else:
            self.memo(op, {"error": {"name": "Error", "message": str(child.failure)}})

    def trace_text(self) -> str:
        return "\n".join(self.trace)


def _mode(op: dict[str, Any]) -> str:
    return str((op.get("opts") or {}).get("parallelMode", "wait"))


def _seconds(duration: str) -> float:
    """An Inngest duration string (``"3d"``, ``"90s"``) in seconds."""
    return float(sum(int(n) * _UNIT_SECONDS[u] for n, u in re.findall(r"(\d+)([wdhms])", duration)))


def parse(lines: list[str]) -> list[dict[str, Any]]:
    """SSE lines as events ``{"event", "id"?, "data"}``; a ``retry`` field is an event too."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    for line in [*lines, ""]:
        if not line:
            if "data" in current or "retry" in current:
                events.append(current)
            current = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(":")
            current[key] = value.strip()
    return events


def read_events(client: TestClient, url: str, **headers: str) -> list[dict[str, Any]]:
    with client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return parse(list(response.iter_lines()))


class Reader(threading.Thread):
    """Follows an SSE stream in the background until it ends or ``stop(events)`` is true."""

    def __init__(
        self,
        client: TestClient,
        url: str,
        stop: Callable[[list[dict[str, Any]]], bool] = lambda _: False,
        **headers: str,
    ) -> None:
        super().__init__(daemon=True)
        self.client, self.url, self.stop, self.headers = client, url, stop, headers
        self.events: list[dict[str, Any]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.client.stream("GET", self.url, headers=self.headers) as response:
                assert response.status_code == 200, response.read()
                lines: list[str] = []
                for line in response.iter_lines():
                    lines.append(line)
                    if not line:
                        self.events = parse(lines)
                        if self.stop(self.events):
                            return
                self.events = parse(lines)
        except BaseException as exc:  # reported by finish()
            self.error = exc

    def finish(self, timeout: float = 30) -> list[dict[str, Any]]:
        self.join(timeout)
        assert not self.is_alive(), f"{self.url}: still streaming after {timeout} s"
        if self.error is not None:
            raise self.error
        return self.events


#: The smallest useful blueprint: a trigger and one transform step.
ONE_STEP: dict[str, Any] = {
    "nodes": [
        {"id": "start", "type": "trigger"},
        {
            "id": "hi",
            "type": "action",
            "service": "transform",
            "task": "build",
            "params": {"fields": {"x": 1}},
        },
    ],
    "edges": [{"source": "start", "target": "hi"}],
}


#: A saved workflow that is a WhatsApp/voice command: intent SEND_REMINDER with a phone slot.
REMINDER_INTENT: dict[str, Any] = {
    "name": "Remind unpaid customers",
    "description": "Send a payment reminder to a customer.",
    "nodes": [
        {
            "id": "asked",
            "type": "trigger",
            "trigger": "intent",
            "intent": "SEND_REMINDER",
            "slots": [{"name": "phone", "type": "phone", "question": "Whose number?"}],
        },
        {
            "id": "remind",
            "type": "action",
            "service": "whatsapp",
            "task": "send_message",
            "params": {"to": "{{ trigger_data.phone }}", "body": "A friendly reminder to pay."},
        },
    ],
    "edges": [{"source": "asked", "target": "remind"}],
}


def _no_database() -> Any:
    raise AssertionError("a task called outside a run has no database")


def call_task(
    tool: BaseTool,
    name: str,
    params: TaskParams,
    settings: Settings,
    *,
    key: str = "run:node",
    credential: Credential | None = None,
) -> dict[str, Any]:
    """Call a tool's task as a step would (``tool.execute``), outside a run: with its own
    :class:`ToolResources` (the guarded HTTP client, no database), closed afterwards."""

    async def call() -> dict[str, Any]:
        async with ToolResources(settings, _no_database) as tools:
            context = ToolContext(
                idempotency_key=key, settings=settings, resources=tools, credential=credential
            )
            return await tool.execute(name, params, context)

    return asyncio.run(call())

"""Runs that used to spin forever: hostile templates, outputs PostgreSQL cannot store, passes
that fail outside any step. Each must end — the node fails with a clear code, or the run fails
with ``engine_error`` after a bounded number of backed-off passes — and nothing is called more
often than its ``max_attempts``. Through the HTTP API, against real PostgreSQL."""

from __future__ import annotations

import time
import tracemalloc
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from blueprint_engine.app import create_app
from tests.conftest import make_settings
from tests.support import Peer, execute, wait_for_run


def _one_action(params: dict[str, Any], **node: Any) -> dict[str, Any]:
    """start -> build (transform.build of ``params``)."""
    action = {"service": "transform", "task": "build", "params": {"fields": params}, **node}
    return _after_start({"id": "build", "type": "action", **action})


def _http_call(url: str, **node: Any) -> dict[str, Any]:
    """start -> call (http.request to ``url``)."""
    action = {"service": "http", "task": "request", "params": {"url": url}, **node}
    return _after_start({"id": "call", "type": "action", **action})


def _after_start(node: dict[str, Any]) -> dict[str, Any]:
    return {
        "nodes": [{"id": "start", "type": "trigger"}, node],
        "edges": [{"source": "start", "target": node["id"]}],
    }


HOSTILE_TEMPLATES = {
    "huge_range": "{{ range(10**9)|list }}",
    "format_on_text": "{{ '{:,}'.format('x') }}",
    "huge_power": "{{ (3**(10**7*2)) % 5 }}",
    "huge_repeat": "{{ 'a'*10**8 }}",
    "nested_loops": "{% for i in range(9999) %}{% for j in range(9999) %}{% endfor %}{% endfor %}",
    "doubling": "{% set a = 'x' * 100000 %}{% set b = a ~ a %}{% set c = b ~ b %}"
    "{% set d = c ~ c %}{% set e = d ~ d %}{% set f = e ~ e %}{{ f }}",
    "printf_width": "{{ '%1000000000d' % 1 }}",
    "center_width": "{{ 'x'|center(10**9) }}",
    "batch_fill": "{{ [1]|batch(10**9, 0)|list }}",
    "int_to_bytes": "{{ (5).to_bytes(10**9, 'big') }}",
    "list_mutation": "{{ trigger_data.items.append(1) }}",
    "unicode_error": "{{ '\\ud800'|urlencode }}",
    "select_each_character": "{{ ('a' * 1000000)|select('string')|join }}",
}


@pytest.mark.parametrize("template", HOSTILE_TEMPLATES.values(), ids=HOSTILE_TEMPLATES.keys())
def test_a_hostile_template_fails_its_node_once(client: TestClient, template: str) -> None:
    """Every failure inside a template is a non-retryable ``expression_error`` of the node
    (before: uncaught errors spun the run forever, or blocked the event loop for minutes)."""
    blueprint = _one_action({"x": template}, retry={"max_attempts": 3})
    run = wait_for_run(client, execute(client, blueprint, {"items": [1]}))
    assert run["status"] == "failed", run
    assert run["error"]["node_id"] == "build"
    assert run["error"]["code"] == "expression_error", run["error"]
    assert run["error"]["attempts"] == 1
    logs = client.get(f"/runs/{run['id']}/logs").json()["logs"]
    assert [row["status"] for row in logs if row["node_id"] == "build"] == ["failed"]


#: One operation of each that loops in Python over every word, line, tag or character of a
#: long text (each took 0.2-3 s, blocking the event loop, before the clock was next read).
LONG_SINGLE_OPERATIONS = {
    "wordwrap_each_word": "{{ ('a ' * 400000)|wordwrap(1) }}",
    "title_each_word": "{{ ('a ' * 400000)|title }}",
    "striptags_each_tag": "{{ ('<a>' * 300000)|striptags }}",
    "indent_each_line": "{{ ('a\\n' * 400000)|indent(1) }}",
}


@pytest.mark.parametrize(
    "template", LONG_SINGLE_OPERATIONS.values(), ids=LONG_SINGLE_OPERATIONS.keys()
)
def test_a_long_single_operation_is_counted_before_it_runs(
    client: TestClient, template: str
) -> None:
    """The CPU-time budget is read between operations, so an operation that walks a long text
    in Python is counted (words, lines, tags, characters) before it starts and refused by
    the operations budget; before, it ran to the end (or was refused only afterwards)."""
    run = wait_for_run(client, execute(client, _one_action({"x": template})))
    assert run["status"] == "failed", run
    assert run["error"]["code"] == "expression_error", run["error"]
    assert "operations" in run["error"]["message"], run["error"]


#: Templates whose result is far larger than anything they produced step by step: one long
#: string held many times by a list, or expanded many times by a format or a separator. Each
#: is about 100 MB (the unbounded forms, ten thousand times longer, exhausted memory).
AMPLIFIERS = {
    "list_as_text": "x{{ [('a' * 100000)] * 1000 }}",
    "list_as_json": "{{ ([('a' * 100000)] * 1000)|tojson }}",
    "format_by_key": "{{ ('%(a)s' * 100) % {'a': 'x' * 1000000} }}",
    "join_separator": "{{ (['a'] * 101)|join('x' * 1000000) }}",
    "indent_blank_lines": "{{ ('\\n' * 100000)|indent(1000, blank=true) }}",
    "batch_of_characters": "{{ ('a' * 1000000)|batch(1)|list }}",
}


@pytest.mark.parametrize("template", AMPLIFIERS.values(), ids=AMPLIFIERS.keys())
def test_an_amplifying_template_is_refused_before_it_allocates(
    client: TestClient, template: str
) -> None:
    """The size of text made from a list, of ``%`` with a mapping, of a join's separators and
    of indented lines is known before it is built (peak allocation measured while the run
    executes; before, each allocated its ~100 MB and only then was refused, or not at all)."""
    tracemalloc.start()
    try:
        run = wait_for_run(client, execute(client, _one_action({"x": template})))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert run["status"] == "failed", run
    assert run["error"]["code"] == "expression_error", run["error"]
    assert peak < 40 * 1024 * 1024, f"peak {peak / 2**20:.0f} MB"


@pytest.mark.parametrize(
    ("where", "expression", "loc", "message"),
    [
        (
            "when",
            " + ".join(["1"] * 200) + " > 1",
            ["nodes", 1, "conditions", 0, "when"],
            "nests more than",
        ),
        ("when", "(" * 300 + "1" + ")" * 300, ["nodes", 1, "conditions", 0, "when"], "nest"),
        ("when", "not " * 300 + "true", ["nodes", 1, "conditions", 0, "when"], "nest"),
        (
            "param",
            "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
            ["nodes", 2, "params", "fields", "x"],
            "macros are not supported",
        ),
        (
            "param",
            "{{ trigger_data.x }}" + "y" * 70_000,
            ["nodes", 2, "params", "fields", "x"],
            "characters long",
        ),
        (
            "param",
            "{{ trigger_data.x|random }}",
            ["nodes", 2, "params", "fields", "x"],
            "No filter named 'random'",
        ),
    ],
    ids=["sum_of_200", "parens_300", "not_300", "macro", "too_long", "nondeterministic_filter"],
)
def test_templates_too_deep_or_unsupported_are_refused_at_save_time(
    client: TestClient, where: str, expression: str, loc: list[Any], message: str
) -> None:
    """Nesting depth and template shape are checked when the blueprint is saved: 422 naming
    node and field (before: RecursionError, a 500)."""
    when = expression if where == "when" else "true"
    param = expression if where == "param" else "ok"
    blueprint = {
        "nodes": [
            {"id": "start", "type": "trigger"},
            {"id": "route", "type": "router", "conditions": [{"branch": "a", "when": when}]},
            {
                "id": "build",
                "type": "action",
                "service": "transform",
                "task": "build",
                "params": {"fields": {"x": param}},
            },
        ],
        "edges": [
            {"source": "start", "target": "route"},
            {"source": "route", "target": "build", "branch": "a"},
        ],
    }
    response = client.post("/workflows", json={"blueprint": blueprint})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_blueprint"
    assert any(d["loc"] == loc and message in d["message"] for d in error["details"]), error


UNSTORABLE_BODIES = {
    "nul_in_text": b'{"name": "a\\u0000b"}',
    "nan": b'{"amount": NaN}',
    "infinity": b'{"amount": -Infinity}',
    "lone_surrogate": b'{"name": "\\ud800"}',
    "deep": b"[" * 200 + b"]" * 200,
    "surrogate_key": b'{"\\udfff": 1}',
}


@pytest.mark.parametrize("body", UNSTORABLE_BODIES.values(), ids=UNSTORABLE_BODIES.keys())
def test_a_response_postgres_cannot_store_fails_the_step_without_repeating_it(
    client: TestClient, peer: Peer, body: bytes
) -> None:
    """A remote server's answer that PostgreSQL cannot hold fails the step as
    ``output_not_storable`` after one call (before: the run re-sent the request ~40 times a
    second, forever, ignoring max_attempts)."""
    peer.handlers["/odd"] = lambda _: (200, body, {"content-type": "application/json"})
    blueprint = _http_call(f"{peer.url}/odd", retry={"max_attempts": 3})
    run = wait_for_run(client, execute(client, blueprint))
    assert run["status"] == "failed", run
    assert run["error"]["code"] == "output_not_storable", run["error"]
    assert run["error"]["node_id"] == "call"
    assert peer.hits["/odd"] == 1
    logs = client.get(f"/runs/{run['id']}/logs").json()["logs"]
    assert [row["status"] for row in logs if row["node_id"] == "call"] == ["failed"]


def test_huge_numbers_from_a_server_are_kept_as_text(client: TestClient, peer: Peer) -> None:
    """JSON numbers Python will not parse (over 4300 digits) leave the body as text."""
    peer.handlers["/big"] = lambda _: (
        200,
        b'{"n": ' + b"9" * 5000 + b"}",
        {"content-type": "application/json"},
    )
    blueprint = _http_call(f"{peer.url}/big")
    run = wait_for_run(client, execute(client, blueprint))
    assert run["status"] == "succeeded", run
    node = next(n for n in run["nodes"] if n["id"] == "call")
    assert node["output"]["body"].startswith('{"n": 999')


UNDECODABLE_BODIES = {
    "json_deeper_than_the_parser": (b"[" * 100_000 + b"]" * 100_000, "application/json"),
    "non_text_charset": (b"hello", "text/plain; charset=rot13"),
    "binary_charset": (b"hello", "text/plain; charset=hex"),
}


@pytest.mark.parametrize(
    ("body", "content_type"), UNDECODABLE_BODIES.values(), ids=UNDECODABLE_BODIES.keys()
)
def test_an_answer_that_cannot_be_decoded_is_kept_as_text_after_one_call(
    client: TestClient, peer: Peer, body: bytes, content_type: str
) -> None:
    """JSON nested past the parser's recursion limit, or a charset that names a codec that is
    not a text encoding, is the server's answer, not a crash of the tool (before:
    ``tool_crashed``, retried: the request was sent max_attempts times)."""
    peer.handlers["/odd"] = lambda _: (200, body, {"content-type": content_type})
    blueprint = _http_call(f"{peer.url}/odd", retry={"max_attempts": 3})
    run = wait_for_run(client, execute(client, blueprint))
    assert run["status"] == "succeeded", run
    node = next(n for n in run["nodes"] if n["id"] == "call")
    assert node["output"]["body"] == body.decode()
    assert peer.hits["/odd"] == 1


@pytest.mark.parametrize(
    ("template", "loc"),
    [("{{ '\\u0000' }}", "params.fields.x"), ("{{ 'a' ~ '\\udc00' }}", "params.fields.x")],
    ids=["nul", "surrogate"],
)
def test_params_a_template_makes_unstorable_fail_before_the_call(
    client: TestClient, template: str, loc: str
) -> None:
    run = wait_for_run(client, execute(client, _one_action({"x": template})))
    assert run["status"] == "failed"
    assert run["error"]["code"] == "invalid_params", run["error"]
    assert run["error"]["message"].startswith(loc)


def test_a_pass_that_keeps_failing_backs_off_then_fails_the_run(database_url: str) -> None:
    """An error outside any step (here: a stored version an operator broke by hand) fails the
    pass. The run is handed back with a growing back-off that the claim honours, and after
    RUN_MAX_PASS_FAILURES passes it fails with ``engine_error``; once the cause is fixed,
    ``POST /runs/{id}/retry`` resumes it (before: re-claimed at once, forever)."""
    settings = make_settings(database_url, run_max_pass_failures=3, run_pass_backoff_seconds=0.2)
    with TestClient(create_app(settings)) as client:
        created = client.post("/workflows", json={"blueprint": _one_action({"x": 1})})
        workflow_id = created.json()["id"]
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(
                "update workflow_versions set blueprint = '{\"nodes\": []}' where workflow_id = %s",
                (workflow_id,),
            )
        started = time.monotonic()
        response = client.post("/workflow/execute", json={"workflow_id": workflow_id})
        run_id = response.json()["run_id"]
        run = wait_for_run(client, run_id)
        elapsed = time.monotonic() - started
        assert run["status"] == "failed" and run["error"]["code"] == "engine_error", run
        assert "3 passes in a row" in run["error"]["message"]
        with psycopg.connect(database_url) as conn:
            [(failures,)] = conn.execute(
                "select pass_failures from workflow_runs where id = %s", (run_id,)
            ).fetchall()
        assert failures == 3
        assert elapsed >= 0.2 + 0.4, "the second and third passes waited out their back-off"

        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(
                "update workflow_versions set blueprint = %s where workflow_id = %s",
                (psycopg.types.json.Jsonb(_one_action({"x": 1})), workflow_id),
            )
        # The runner caches parsed versions; the broken one never parsed, so nothing is stale.
        assert client.post(f"/runs/{run_id}/retry").status_code == 200
        assert wait_for_run(client, run_id)["status"] == "succeeded"


def test_a_response_too_large_to_keep_is_not_read_whole(client: TestClient, peer: Peer) -> None:
    """A body over the 4 MB a step may keep fails the step at once (not retried): it could
    never be stored, and reading it whole would let any server exhaust the worker's memory."""
    peer.handlers["/huge"] = lambda _: (200, b"x" * (5 * 1024 * 1024), {"content-length": None})
    run = wait_for_run(client, execute(client, _http_call(f"{peer.url}/huge")))
    assert run["status"] == "failed", run
    assert run["error"]["code"] == "response_too_large", run["error"]
    assert peer.hits["/huge"] == 1


def test_a_step_output_is_what_a_replay_will_read(client: TestClient) -> None:
    """Later steps see a step's output as it was stored, not the Python value the step
    returned: a template's ``range`` is kept as its text, and a run that resumed from the
    checkpoint would see exactly that (before: ``use`` saw ``[0, 1, 2]`` in this pass but
    would have seen the characters of ``"range(0, 3)"`` after a restart)."""
    blueprint = {
        "nodes": [
            {"id": "start", "type": "trigger"},
            {"id": "make", "type": "action", "service": "transform", "task": "build",
             "params": {"fields": {"x": "{{ range(3) }}", "k": "{{ {1: 'a'} }}"}}},
            {"id": "use", "type": "action", "service": "transform", "task": "build",
             "params": {"fields": {"x": "{{ steps.make.output.x|list|length }}",
                                   "k": "{{ steps.make.output.k.keys()|list }}"}}},
        ],
        "edges": [{"source": "start", "target": "make"}, {"source": "make", "target": "use"}],
    }  # fmt: skip
    run = wait_for_run(client, execute(client, blueprint))
    assert run["status"] == "succeeded", run
    outputs = {node["id"]: node["output"] for node in run["nodes"]}
    assert outputs["make"] == {"x": "range(0, 3)", "k": {"1": "a"}}
    assert outputs["use"] == {"x": len("range(0, 3)"), "k": ["1"]}


def test_keys_json_cannot_hold_fail_the_step_once(client: TestClient) -> None:
    """An object key that is neither text nor a number (a template's tuple) cannot be
    stored: the resolved params are ``invalid_params`` at once (before: every pass failed
    writing the step, and the run ended, passes later, as ``attempt_lost``)."""
    blueprint = _one_action({"x": "{{ {(1, 2): 3} }}"}, retry={"max_attempts": 3})
    run = wait_for_run(client, execute(client, blueprint))
    assert run["status"] == "failed", run
    assert run["error"]["code"] == "invalid_params", run["error"]
    assert run["error"]["message"] == "params.fields.x.(1, 2): key is not text or a number"
    assert run["error"]["attempts"] == 1


def test_templates_too_costly_to_compile_are_refused_at_save_time(client: TestClient) -> None:
    """Compiling costs about 40 µs a template token: one template may have 1000 tokens and a
    blueprint 20 000 in all, so saving the largest blueprint costs about a second of CPU, in a
    worker thread (before: a 1 MB blueprint of references took ~10 s on the event loop)."""
    dense = "{{ trigger_data }}" * 300  # 5 tokens each: 1501 tokens
    one = client.post("/workflows", json={"blueprint": _one_action({"x": dense})})
    assert one.status_code == 422, one.text
    assert any(
        d["loc"] == ["nodes", 1, "params", "fields", "x"]
        and "more than 1000 tokens" in d["message"]
        for d in one.json()["error"]["details"]
    ), one.json()

    nine_hundred = "{{ trigger_data }}" * 180
    many = _one_action({f"x{i}": nine_hundred + str(i) for i in range(25)})
    response = client.post("/workflows", json={"blueprint": many})
    assert response.status_code == 422, response.text
    assert any(
        "more than 20000 tokens in all" in d["message"] for d in response.json()["error"]["details"]
    ), response.json()

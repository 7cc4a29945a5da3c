"""The HTTP API: workflows and versions, runs and logs, catalog, health, and bad input."""

from __future__ import annotations

import json
import uuid
from typing import Any

from fastapi.testclient import TestClient

from blueprint_engine.integrations import TOOL_REGISTRY
from blueprint_engine.workflows.nodes import ForeachNode, WorkflowNode
from tests.support import execute, wait_for_run

EXAMPLE = {
    "name": "Say hi",
    "nodes": [
        {"id": "start", "type": "trigger", "position": {"x": 0, "y": 0}},
        {
            "id": "hi",
            "type": "action",
            "service": "transform",
            "task": "build",
            "params": {"fields": {"msg": "hi {{ trigger_data.name }}"}},
        },
    ],
    "edges": [{"source": "start", "target": "hi"}],
}


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code, error
    assert error["message"]
    return error


def test_workflow_versions_and_activation(client: TestClient) -> None:
    created = client.post("/workflows", json={"blueprint": EXAMPLE})
    assert created.status_code == 201, created.text
    wf = created.json()
    assert wf["version"] == 1 and wf["active"] is False and wf["name"] == "Say hi"
    assert wf["blueprint"]["nodes"][0]["position"] == {"x": 0.0, "y": 0.0}

    changed = {**EXAMPLE, "nodes": [EXAMPLE["nodes"][0], {**EXAMPLE["nodes"][1], "name": "Greet"}]}
    updated = client.put(f"/workflows/{wf['id']}", json={"blueprint": changed})
    assert updated.status_code == 200 and updated.json()["version"] == 2
    assert [v["version"] for v in updated.json()["versions"]] == [2, 1]
    v1 = client.get(f"/workflows/{wf['id']}", params={"version": 1}).json()
    assert "name" not in v1["blueprint"]["nodes"][1], "versions are immutable"

    active = client.post(f"/workflows/{wf['id']}/activate", json={"version": 1})
    assert active.json()["active_version"] == 1
    assert client.post(f"/workflows/{wf['id']}/deactivate").json()["active"] is False
    _error(client.post(f"/workflows/{wf['id']}/activate", json={"version": 9}), 404, "not_found")


def test_execute_saved_workflow_and_read_logs(client: TestClient) -> None:
    wf = client.post("/workflows", json={"blueprint": EXAMPLE}).json()
    response = client.post(
        "/workflow/execute", json={"workflow_id": wf["id"], "payload": {"name": "Asha"}}
    )
    assert response.status_code == 202
    run = wait_for_run(client, response.json()["run_id"])
    assert run["status"] == "succeeded" and run["output"] == {"hi": {"msg": "hi Asha"}}
    assert [n["status"] for n in run["nodes"]] == ["succeeded", "succeeded"]
    logs = client.get(f"/runs/{run['id']}/logs").json()["logs"]
    assert [(r["node_id"], r["status"]) for r in logs] == [
        ("start", "succeeded"),
        ("hi", "succeeded"),
    ]
    assert logs[1]["input"] == {"fields": {"msg": "hi Asha"}}
    assert logs[1]["duration_ms"] >= 0
    later = client.get(f"/runs/{run['id']}/logs", params={"after_id": logs[0]["id"]}).json()["logs"]
    assert [r["node_id"] for r in later] == ["hi"]


def test_router_log_row_shows_each_condition_its_operands_and_result(
    client: TestClient,
) -> None:
    router = {
        "id": "route",
        "type": "router",
        "conditions": [
            {
                "branch": "vip",
                "when": "trigger_data.amount > 100000 and trigger_data.tier.upper() == 'GOLD'",
            },
            {"branch": "big", "when": "trigger_data.amount > 100"},
            {"branch": "never", "when": "trigger_data.missing > 1"},
        ],
        "default": "normal",
    }
    blueprint = {
        "nodes": [{"id": "start", "type": "trigger"}, router]
        + [{"id": b, "type": "end"} for b in ("vip", "big", "never", "normal")],
        "edges": [{"source": "start", "target": "route"}]
        + [
            {"source": "route", "target": b, "branch": b} for b in ("vip", "big", "never", "normal")
        ],
    }
    run_id = execute(client, blueprint, {"amount": 500, "tier": "gold"})
    assert wait_for_run(client, run_id)["status"] == "succeeded"
    logs = client.get(f"/runs/{run_id}/logs").json()["logs"]
    [row] = [r for r in logs if r["node_id"] == "route"]
    assert row["output"] == {"branch": "big"}
    assert row["input"] == {
        "conditions": [
            {
                "branch": "vip",
                "when": "trigger_data.amount > 100000 and trigger_data.tier.upper() == 'GOLD'",
                "operands": {"trigger_data.amount": 500, "trigger_data.tier": "gold"},
                "result": False,
            },
            {
                "branch": "big",
                "when": "trigger_data.amount > 100",
                "operands": {"trigger_data.amount": 500},
                "result": True,
            },
        ]
    }, "every condition evaluated until one held, with what it compared"


def test_router_log_row_names_the_condition_that_failed(client: TestClient) -> None:
    blueprint = {
        "nodes": [
            {"id": "start", "type": "trigger"},
            {
                "id": "route",
                "type": "router",
                "conditions": [{"branch": "big", "when": "trigger_data.amount > 100"}],
            },
            {"id": "big", "type": "end"},
        ],
        "edges": [
            {"source": "start", "target": "route"},
            {"source": "route", "target": "big", "branch": "big"},
        ],
    }
    run_id = execute(client, blueprint, {"amount": "lots"})
    assert wait_for_run(client, run_id)["status"] == "failed"
    logs = client.get(f"/runs/{run_id}/logs").json()["logs"]
    [row] = [r for r in logs if r["node_id"] == "route"]
    [condition] = row["input"]["conditions"]
    assert condition["operands"] == {"trigger_data.amount": "lots"}
    assert "result" not in condition and "'>' not supported" in condition["error"]


def test_runs_are_listed_newest_first_with_a_cursor(client: TestClient) -> None:
    wf = client.post("/workflows", json={"blueprint": EXAMPLE}).json()
    made = [
        client.post(
            "/workflow/execute", json={"workflow_id": wf["id"], "payload": {"name": str(i)}}
        ).json()["run_id"]
        for i in range(5)
    ]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"/workflows/{wf['id']}/runs", params=params).json()
        seen += [run["id"] for run in page["runs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made))
    _error(
        client.get(f"/workflows/{wf['id']}/runs", params={"cursor": "nope"}),
        422,
        "validation_error",
    )


def test_catalog_schema_and_health(client: TestClient) -> None:
    schema = client.get("/blueprint/schema").json()
    assert schema["title"] == "Blueprint" and "nodes" in schema["properties"]
    # each kind says what it does in words for users (the dashboard shows them)
    kinds = schema["$defs"]
    assert kinds["ForeachNode"]["description"] == ForeachNode.summary
    assert kinds["WorkflowNode"]["description"] == WorkflowNode.summary
    assert kinds["ManualTrigger"]["description"].startswith("Runs started by hand")
    tools = {t["service"]: t for t in client.get("/tools").json()["tools"]}
    # every registered tool but the internal ones (a new tool needs no line here)
    assert set(tools) == set(TOOL_REGISTRY) - {"sessions", "channel"}
    assert {"whatsapp", "razorpay", "http", "transform", "llm"} <= set(tools)
    assert tools["whatsapp"]["sandbox"] is True, "no Twilio credentials in tests"
    assert {t["name"] for t in tools["razorpay"]["tasks"]} == {
        "create_payment_link",
        "create_invoice",
        "fetch_payment",
        "refund_payment",
    }
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["database"] == "ok"


def test_malformed_json_is_400(client: TestClient) -> None:
    response = client.post(
        "/workflows", content=b'{"blueprint": {', headers={"content-type": "application/json"}
    )
    _error(response, 400, "malformed_json")


def test_missing_fields_are_422_with_the_field_path(client: TestClient) -> None:
    error = _error(client.post("/workflows", json={"name": "x"}), 422, "validation_error")
    assert error["details"][0]["loc"] == ["body", "blueprint"]
    error = _error(client.post("/workflow/execute", json={"payload": {}}), 422, "validation_error")
    assert error["details"][0]["loc"] == ["body", "workflow_id"]


def test_unknown_ids_are_404(client: TestClient) -> None:
    missing = uuid.uuid4()
    for path in (
        f"/workflows/{missing}",
        f"/runs/{missing}",
        f"/runs/{missing}/logs",
        f"/workflows/{missing}/runs",
    ):
        _error(client.get(path), 404, "not_found")
    _error(client.post(f"/runs/{missing}/cancel"), 404, "not_found")
    _error(client.post("/workflow/execute", json={"workflow_id": str(missing)}), 404, "not_found")
    _error(client.get("/runs/not-a-uuid"), 422, "validation_error")
    _error(client.get(f"/runs/{missing}/no-such-route"), 404, "not_found")
    _error(client.post("/no/such/route"), 404, "not_found")  # GETs outside the API: dashboard


def test_oversize_body_is_413(client: TestClient, settings: Any) -> None:
    big = json.dumps({"blueprint": EXAMPLE, "payload": "x" * settings.max_body_bytes})
    response = client.post(
        "/workflow/execute", content=big, headers={"content-type": "application/json"}
    )
    _error(response, 413, "payload_too_large")

    def chunks() -> Any:  # no content-length: the limit applies while streaming
        yield b'{"payload": "'
        for _ in range(settings.max_body_bytes // 65536 + 2):
            yield b"x" * 65536
        yield b'"}'

    streamed = client.post(
        "/workflow/execute", content=chunks(), headers={"content-type": "application/json"}
    )
    _error(streamed, 413, "payload_too_large")


def test_openapi_documents_the_response_shapes(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for name in ("RunOut", "NodeStateOut", "WorkflowOut", "LogsOut", "TurnOut", "SessionOut"):
        assert name in schemas
    ok = spec["paths"]["/runs/{run_id}"]["get"]["responses"]["200"]
    assert ok["content"]["application/json"]["schema"]["$ref"].endswith("/RunOut")


def test_a_failed_step_that_continues_shows_the_output_later_steps_received(
    client: TestClient,
) -> None:
    blueprint = {
        "nodes": [
            {"id": "start", "type": "trigger"},
            {
                "id": "broken",
                "type": "action",
                "service": "transform",
                "task": "build",
                "on_error": "continue",
                "params": {"fields": {"x": "{{ trigger_data.missing.deeper }}"}},
            },
            {"id": "after", "type": "end", "output": {"seen": "{{ steps.broken.output }}"}},
        ],
        "edges": [{"source": "start", "target": "broken"}, {"source": "broken", "target": "after"}],
    }
    response = client.post("/workflow/execute", json={"blueprint": blueprint, "payload": {}})
    assert response.status_code == 202, response.text
    run = wait_for_run(client, response.json()["run_id"])
    assert run["status"] == "succeeded", run
    broken = next(node for node in run["nodes"] if node["id"] == "broken")
    assert broken["status"] == "failed"
    assert broken["error"]["code"] == "expression_error", broken
    assert broken["output"] == {"error": broken["error"]}
    assert broken["output"] == run["output"]["seen"], "what the next step received"

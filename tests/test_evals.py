"""The drafting eval's checks (the model-dependent part cannot run in CI)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evals.drafting.run import CASES, check

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _example(name: str) -> dict[str, Any]:
    blueprint: dict[str, Any] = json.loads((EXAMPLES / name / "blueprint.json").read_text())
    return blueprint


def _case(case_id: str) -> dict[str, Any]:
    case: dict[str, Any] = next(c for c in json.loads(CASES.read_text()) if c["id"] == case_id)
    return case


def test_cases_file_has_at_least_25_cases_with_checks() -> None:
    cases = json.loads(CASES.read_text())
    assert len(cases) >= 25 and all(c["checks"] and c["prompt"] for c in cases)
    assert len({c["id"] for c in cases}) == len(cases)


def test_checks_pass_on_a_matching_blueprint_and_fail_on_another() -> None:
    followup = _example("payment_link_followup")
    assert check(followup, _case("wait_for_link_paid")["checks"]) == []
    assert check(followup, _case("reminder_after_delay")["checks"]) == []
    receipt = _example("payment_receipt")
    assert check(receipt, _case("receipt_on_capture")["checks"]) == []
    failures = check(receipt, _case("big_payment_branch")["checks"])
    assert failures == ["router with >= 2 branches missing"]
    assert check(_example("order_fanout"), _case("fanout_webhooks")["checks"]) == [
        "missing task whatsapp.send_message"
    ]
    assert check(_example("order_fanout"), _case("fanout_three")["checks"]) == ["fan-out 2 < 3"]


def test_a_message_to_me_must_go_to_the_owners_phone() -> None:
    checks = _case("alert_me")["checks"]
    receipt = _example("payment_receipt")
    assert check(receipt, checks) == ["no WhatsApp message to {{ owner.phone }}"]
    send = next(n for n in receipt["nodes"] if n["type"] == "action")
    send["params"]["to"] = "{{ owner.phone }}"
    assert check(receipt, checks) == []


def test_loops_and_intent_triggers_are_checked_inside_and_out() -> None:
    followup = _example("payment_link_followup")
    assert check(followup, _case("remind_each_unpaid")["checks"]) == [
        "trigger manual != schedule",
        "missing task http.request",
        "no foreach",
    ]
    schedule = {"id": "daily", "type": "trigger", "trigger": "schedule", "cron": "0 9 * * 1-5"}
    fetch = {"id": "fetch", "type": "action", "service": "http", "task": "request", "params": {}}
    send = {"id": "send", "type": "action", "service": "whatsapp", "task": "send_message"}
    loop = {"id": "each", "type": "foreach", "items": "{{ x }}", "body": {"nodes": [send]}}
    looped = {"nodes": [schedule, fetch, loop], "edges": []}
    assert check(looped, _case("remind_each_unpaid")["checks"]) == [], "the body's task counts"

    checks = _case("link_by_command")["checks"]
    link = {"id": "link", "type": "action", "service": "razorpay", "task": "create_payment_link"}
    command = {"id": "cmd", "type": "trigger", "trigger": "intent", "slots": [{"type": "phone"}]}
    assert check({"nodes": [command, link, send], "edges": []}, checks) == [
        "no money slot",
        "no confirmation",
    ]
    command.update(slots=[{"type": "phone"}, {"type": "money"}], confirm=True)
    assert check({"nodes": [command, link, send], "edges": []}, checks) == []

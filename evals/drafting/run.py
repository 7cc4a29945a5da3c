"""Score a model on drafting: each case's prompt goes through the real WorkflowArchitect (with
its validation and repairs), then the case's checks run on the blueprint.

    OPENAI_API_KEY=... python -m evals.drafting.run [--model gpt-4o] [--only id,id]

Needs a reachable model (OPENAI_API_KEY and/or OPENAI_BASE_URL), so it is not part of CI.
Prints one line per case and the pass rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from blueprint_engine.agents.architect import WorkflowArchitect
from blueprint_engine.agents.llm import build_chat_model
from blueprint_engine.config import Settings
from blueprint_engine.errors import AppError

CASES = Path(__file__).with_name("cases.json")


def check(blueprint: dict[str, Any], checks: dict[str, Any]) -> list[str]:
    """Return the failed checks (empty = pass). The blueprint already passed validation, so
    every reference resolves to a node that runs before it."""
    nodes = list(_all_nodes(blueprint["nodes"]))
    edges = blueprint["edges"]
    failures = []
    trigger = next(n for n in nodes if n["type"] == "trigger")
    tasks = {f"{n['service']}.{n['task']}" for n in nodes if n["type"] == "action"}
    event_kinds = {"event", "webhook"}  # both start runs from an event
    if (
        "trigger" in checks
        and trigger["trigger"] != checks["trigger"]
        and not ({trigger["trigger"], checks["trigger"]} <= event_kinds)
    ):
        failures.append(f"trigger {trigger['trigger']} != {checks['trigger']}")
    if "event" in checks and trigger.get("event") != checks["event"]:
        failures.append(f"event {trigger.get('event')} != {checks['event']}")
    for task in checks.get("tasks", []):
        if task not in tasks:
            failures.append(f"missing task {task}")
    routers = [n for n in nodes if n["type"] == "router"]
    if "router_branches" in checks:
        labels = max(
            (len({c["branch"] for c in r["conditions"]} | {r["default"]}) for r in routers),
            default=0,
        )
        if labels < checks["router_branches"]:
            failures.append(f"router with >= {checks['router_branches']} branches missing")
    if checks.get("delay") and not any(n["type"] == "delay" for n in nodes):
        failures.append("no delay")
    waits = [n for n in nodes if n["type"] == "wait_for_event"]
    if "wait" in checks and not any(w["event"] == checks["wait"] for w in waits):
        failures.append(f"no wait for {checks['wait']}")
    if checks.get("wait_match") and not any(w.get("match") for w in waits):
        failures.append("wait has no match")
    if checks.get("timeout_branch") and not any(e.get("branch") == "timeout" for e in edges):
        failures.append("no timeout branch")
    if "parallel" in checks:
        fanout = max(
            (sum(e["source"] == n["id"] and not e.get("branch") for e in edges) for n in nodes),
            default=0,
        )
        if fanout < checks["parallel"]:
            failures.append(f"fan-out {fanout} < {checks['parallel']}")
    if checks.get("retry") and not any(n.get("retry") for n in nodes):
        failures.append("no retry policy")
    if checks.get("on_error_continue") and not any(n.get("on_error") == "continue" for n in nodes):
        failures.append("no on_error: continue")
    if checks.get("end_output") and not any(n["type"] == "end" and n.get("output") for n in nodes):
        failures.append("no end output")
    if checks.get("to_owner") and not any(_sends_to_owner(n) for n in nodes):
        failures.append("no WhatsApp message to {{ owner.phone }}")
    if checks.get("foreach") and not any(n["type"] == "foreach" for n in nodes):
        failures.append("no foreach")
    slot_types = {s["type"] for s in trigger.get("slots", [])}
    for kind in checks.get("slot_types", []):
        if kind not in slot_types:
            failures.append(f"no {kind} slot")
    if checks.get("confirm") and not trigger.get("confirm"):
        failures.append("no confirmation")
    return failures


def _all_nodes(nodes: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The nodes and those of their loop bodies."""
    for node in nodes:
        yield node
        yield from _all_nodes(node.get("body", {}).get("nodes", []))


def _sends_to_owner(node: dict[str, Any]) -> bool:
    """A WhatsApp message whose recipient is the owner's phone (not a number the model made
    up)."""
    to = node.get("params", {}).get("to") if node["type"] == "action" else None
    return isinstance(to, str) and to.replace(" ", "") == "{{owner.phone}}"


async def main() -> int:
    parser = argparse.ArgumentParser(description="Score drafting on evals/drafting/cases.json")
    parser.add_argument("--model", help="override OPENAI_MODEL")
    parser.add_argument("--only", help="comma-separated case ids")
    args = parser.parse_args()
    settings = Settings()
    if args.model:
        settings = settings.model_copy(update={"openai_model": args.model})
    model = build_chat_model(settings)
    if model is None:
        print("no model configured: set OPENAI_API_KEY (and/or OPENAI_BASE_URL)", file=sys.stderr)
        return 2
    architect = WorkflowArchitect(model, settings)
    cases = json.loads(CASES.read_text())
    if args.only:
        wanted = set(args.only.split(","))
        cases = [c for c in cases if c["id"] in wanted]
    passed = 0
    for case in cases:
        started = time.perf_counter()
        try:
            draft = await architect.draft(case["prompt"])
            failures = check(draft.blueprint, case["checks"])
            attempts = draft.attempts
        except AppError as exc:
            failures, attempts = [f"{exc.code}: {exc.message}"], 0
        seconds = time.perf_counter() - started
        passed += not failures
        verdict = "PASS" if not failures else "FAIL " + "; ".join(failures)
        print(f"{case['id']:<28} {seconds:6.1f}s attempts={attempts} {verdict}")
    print(
        f"model {settings.openai_model}: {passed}/{len(cases)} passed "
        f"({100 * passed / max(len(cases), 1):.0f}%)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

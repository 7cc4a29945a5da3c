"""The architect's answer format, derived from the node kinds: every kind can be drafted, a
draft of each kind becomes a valid blueprint, and no kind or field can be left out of the
schema or the prompt. (Through the API and the model's HTTP: ``tests/test_drafting.py``.)"""

from __future__ import annotations

import json
from typing import Any
from uuid import uuid4

import pytest
from pydantic import BaseModel

from blueprint_engine.agents.architect import system_prompt
from blueprint_engine.agents.draft_format import (
    DraftBlueprint,
    DraftNode,
    draft_fields,
    draft_type,
    kind_rules,
    to_blueprint,
)
from blueprint_engine.workflows.nodes import (
    NODE_KINDS,
    TRIGGER_NAMES,
    DraftField,
    IntentTrigger,
    NodeKind,
    TriggerNode,
    kind_classes,
    kind_name,
)
from blueprint_engine.workflows.schema import validate_blueprint


def node(id: str, type: str, **fields: Any) -> dict[str, Any]:
    """A node as the model writes it: every draft field present, null when it does not apply."""
    base = dict.fromkeys(DraftNode.model_fields)
    assert not fields.keys() - base.keys(), f"not draft fields: {fields.keys() - base.keys()}"
    return {**base, "id": id, "type": type, "name": id.replace("_", " ").title(), **fields}


def edge(source: str, target: str, branch: str | None = None) -> dict[str, Any]:
    return {"source": source, "target": target, "branch": branch}


def convert(nodes: list[dict[str, Any]], edges: list[dict[str, Any]]) -> dict[str, Any]:
    """Parse the answer as the SDK does, convert it, and validate the blueprint."""
    answer = {"name": "Test", "description": "A test", "nodes": nodes, "edges": edges}
    draft = DraftBlueprint.model_validate_json(json.dumps(answer))
    blueprint, issues = to_blueprint(draft)
    assert issues == []
    validate_blueprint(blueprint)
    return blueprint


SLOTS = [
    {
        "name": "customer_phone",
        "type": "phone",
        "required": True,
        "question": "Which number should get the reminder?",
        "description": "The customer's WhatsApp number",
    },
    {
        "name": "amount",
        "type": "money",
        "required": False,
        "question": "How much is due?",
        "description": "",
    },
]


def test_an_intent_trigger_with_slots_becomes_a_valid_blueprint_with_those_slots() -> None:
    blueprint = convert(
        [
            node(
                "remind_command",
                "trigger",
                trigger="intent",
                intent="SEND_REMINDER",
                slots=SLOTS,
                confirm=True,
            ),
            node(
                "remind",
                "action",
                service="whatsapp",
                task="send_message",
                params_json=json.dumps(
                    {
                        "to": "{{ trigger_data.customer_phone }}",
                        "body": "A reminder: {{ trigger_data.amount.display }} is due.",
                    }
                ),
                retry={
                    "max_attempts": 3,
                    "initial_backoff_seconds": 2,
                    "max_backoff_seconds": None,
                },
            ),
        ],
        [edge("remind_command", "remind")],
    )
    trigger = validate_blueprint(blueprint).trigger
    assert isinstance(trigger, IntentTrigger)
    assert trigger.intent == "SEND_REMINDER" and trigger.confirm is True
    assert [s.model_dump() for s in trigger.slots] == SLOTS
    assert blueprint["nodes"][1]["retry"] == {
        "max_attempts": 3,
        "initial_backoff_seconds": 2,
        "max_backoff_seconds": None,
    }


def test_a_foreach_body_and_a_workflow_node_round_trip() -> None:
    child = str(uuid4())
    body = {
        "nodes": [
            {
                "id": "remind_one",
                "type": "action",
                "service": "whatsapp",
                "task": "send_message",
                "params": {"to": "{{ item.phone }}", "body": "Invoice {{ item.number }} is due"},
            },
            {"id": "item_done", "type": "end", "output": {"sent": "{{ steps.remind_one.output }}"}},
        ],
        "edges": [{"source": "remind_one", "target": "item_done"}],
    }
    blueprint = convert(
        [
            node("start", "trigger", trigger="manual"),
            node(
                "each_invoice",
                "foreach",
                items="{{ trigger_data.invoices }}",
                body_json=json.dumps(body),
                concurrency=5,
                on_error="continue",
            ),
            node(
                "each_customer",
                "foreach",
                items="{{ trigger_data.customers }}",
                workflow_id=child,
                version=2,
                timeout="1h",
            ),
            node(
                "summarise",
                "workflow",
                workflow_id=child,
                input_json=json.dumps({"count": "{{ steps.each_invoice.output.count }}"}),
                timeout="10m",
            ),
            node("done", "end", output_json='{"ok": true}'),
        ],
        [
            edge("start", "each_invoice"),
            edge("each_invoice", "each_customer"),
            edge("each_customer", "summarise"),
            edge("summarise", "done"),
        ],
    )
    nodes = {n["id"]: n for n in blueprint["nodes"]}
    assert nodes["each_invoice"]["body"] == body
    assert nodes["each_invoice"]["concurrency"] == 5
    assert nodes["each_customer"]["workflow"] == {"workflow_id": child, "version": 2}
    assert nodes["summarise"]["input"] == {"count": "{{ steps.each_invoice.output.count }}"}
    assert nodes["done"]["output"] == {"ok": True}
    valid = validate_blueprint(blueprint)
    assert [str(wid) for n in valid.nodes for wid, _ in n.calls()] == [child, child]


def test_broken_json_in_a_foreach_body_is_an_issue_at_its_draft_field() -> None:
    answer = {
        "name": "x",
        "description": "x",
        "nodes": [
            node("start", "trigger", trigger="manual"),
            node("each", "foreach", items="{{ trigger_data.xs }}", body_json="{nodes: ["),
        ],
        "edges": [edge("start", "each")],
    }
    _, issues = to_blueprint(DraftBlueprint.model_validate(answer))
    assert issues == [
        {
            "loc": ["nodes", 1, "body_json"],
            "node_id": "each",
            "message": "not valid JSON: Expecting property name enclosed in double quotes",
        }
    ]


def test_every_kind_and_trigger_kind_is_in_the_draft_schema_and_the_prompt() -> None:
    """A new node kind (or trigger kind) cannot be forgotten: the draft's ``type`` and
    ``trigger`` enums, its fields and the prompt come from the registry, and each kind says
    what it is and how to write it."""
    schema = DraftNode.model_json_schema()["properties"]
    assert schema["type"]["enum"] == list(NODE_KINDS)
    assert schema["trigger"]["anyOf"][0]["enum"] == list(TRIGGER_NAMES)
    prompt = system_prompt()
    assert kind_rules() in prompt
    for kind in kind_classes():
        own = vars(kind)
        assert own.get("summary") and own.get("draft_rule"), f"{kind.__name__} says how to draft"
        assert kind.summary in prompt and kind.draft_rule in prompt
        for name in kind.draft_fields:
            assert kind_name(kind) in schema[name]["description"], (kind, name)
    for name in [*NODE_KINDS, *TRIGGER_NAMES]:
        assert f'"{name}"' in prompt or f"- {name}" in prompt, name


@pytest.mark.parametrize("kind", kind_classes(), ids=lambda k: k.__name__)
def test_every_field_of_a_kind_can_be_drafted(kind: type[NodeKind]) -> None:
    """Each blueprint field of a kind is filled by one of its draft fields."""
    drafted = {declared.target(name)[0] for name, declared in kind.draft_fields.items()}
    common = {"type", "id", "name", "position"} | (
        {"trigger"} if issubclass(kind, TriggerNode) else set()
    )
    assert set(kind.model_fields) - common == drafted


def test_a_field_strict_mode_cannot_express_or_two_types_for_one_name_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(TypeError, match="_json"):
        draft_type(dict[str, Any])
    with pytest.raises(TypeError, match="_json"):
        draft_type(int | str)
    monkeypatch.setattr(IntentTrigger, "draft_fields", {"event": DraftField(int, "clash")})
    with pytest.raises(TypeError, match="draft field 'event'"):
        draft_fields()


def test_a_nested_model_is_drafted_as_a_strict_copy() -> None:
    """Every field required and no defaults, constraints or patterns (strict mode refuses
    some of them, and servers differ on the rest)."""
    slot = draft_type(IntentTrigger.model_fields["slots"].annotation).__args__[0]
    assert issubclass(slot, BaseModel)
    schema = slot.model_json_schema()
    assert schema["required"] == list(schema["properties"])
    for prop in schema["properties"].values():
        assert not prop.keys() & {"default", "pattern", "minLength", "maxLength"}, prop

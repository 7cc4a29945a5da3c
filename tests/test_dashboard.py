"""The dashboard in a real browser (Playwright + Chromium) against the built app and the real
API on PostgreSQL, served by uvicorn; the model is a local OpenAI-compatible server.

Needs the build (``./scripts/test.sh`` makes it) and a Chromium (``tests/browser.py`` finds
Playwright's own or the system's; without one these tests fail saying how to get one).
Screenshots land in ``test-artifacts/``.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from cryptography.fernet import Fernet
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright
from pydantic import SecretStr

from blueprint_engine.app import create_app
from blueprint_engine.config import Settings
from blueprint_engine.routers.dashboard import DIST
from blueprint_engine.store.vault import Vault
from tests.browser import launch
from tests.conftest import make_settings
from tests.support import JWT_SECRET, Peer, chat_completion, token_for
from tests.test_drafting import edge, node

KEY = "svc-dashboard-test-key"
#: The test app's CREDENTIALS_KEY: connections can be stored.
CREDENTIALS_KEY = Fernet.generate_key().decode()
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

#: What the model drafts: an order is paid -> compose a text -> wait 3 s -> WhatsApp it -> end.
ORDER_DRAFT = {
    "name": "Order paid notice",
    "description": "WhatsApp the customer when their order is paid",
    "nodes": [
        node("order_paid", "trigger", trigger="event", event="shop/order.paid"),
        node(
            "compose",
            "action",
            service="transform",
            task="build",
            params_json=json.dumps({"fields": {"text": "Order {{ trigger_data.order_id }} paid"}}),
        ),
        node("pause", "delay", duration="3s"),
        node(
            "notify",
            "action",
            service="whatsapp",
            task="send_message",
            params_json=json.dumps(
                {"to": "{{ trigger_data.phone }}", "body": "{{ steps.compose.output.text }}"}
            ),
        ),
        node("done", "end"),
    ],
    "edges": [
        edge("order_paid", "compose"),
        edge("compose", "pause"),
        edge("pause", "notify"),
        edge("notify", "done"),
    ],
}
ORDER = {"order_id": "A-1001", "phone": "+919876543210"}


class Model(Peer):
    """A local OpenAI-compatible chat-completions server: answers with ``draft`` (a dict as the
    model writes it), ORDER_DRAFT unless a test sets another."""

    def __init__(self) -> None:
        super().__init__()
        self.draft: dict[str, Any] = ORDER_DRAFT
        self.handlers["/v1/chat/completions"] = lambda body: (
            200,
            chat_completion(json.dumps(self.draft)),
        )


@pytest.fixture(scope="module")
def model() -> Iterator[Model]:
    server = Model()
    yield server
    server.close()


@contextlib.contextmanager
def serving(settings: Settings) -> Iterator[str]:
    """The API + dashboard with ``settings``, served by uvicorn on a free local port, which is
    its ``PUBLIC_BASE_URL`` (the base of the hook and webhook URLs it shows)."""
    if not (DIST / "index.html").is_file():
        pytest.fail("the dashboard is not built: ./scripts/test.sh builds it (Node.js >= 18)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = settings.model_copy(update={"public_base_url": f"http://127.0.0.1:{port}"})
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def base_url(database_url: str, model: Model) -> Iterator[str]:
    """The API + dashboard with an API key required, the model at ``model``."""
    settings = make_settings(
        database_url,
        api_keys=[KEY],
        openai_base_url=f"{model.url}/v1",
        openai_api_key="sk-test",
        llm_max_attempts=1,
        credentials_key=CREDENTIALS_KEY,
    )
    with serving(settings) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        try:
            chromium = launch(playwright)
        except RuntimeError as error:
            pytest.fail(str(error))
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=DESKTOP)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    context.close()
    assert errors == [], f"errors in the page: {errors}"


def sign_in(page: Page, base_url: str) -> None:
    page.goto(f"{base_url}/")
    page.get_by_role("textbox", name="API key").fill(KEY)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()


def api(page: Page, base_url: str, method: str, path: str, body: Any = None) -> Any:
    response = page.request.fetch(
        f"{base_url}{path}", method=method, headers={"X-API-Key": KEY}, data=body
    )
    assert response.ok, response.text()
    return response.json()


def card(page: Page, node_id: str) -> Any:
    return page.locator(f".react-flow__node[data-id='{node_id}'] .card")


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name))


def test_draft_edit_dry_run_activate_and_watch_a_run(page: Page, base_url: str) -> None:
    sign_in(page, base_url)

    # Draft from a prompt: the graph appears, warnings on the nodes they concern.
    page.get_by_role("link", name="New").click()
    page.get_by_label("Describe what should happen").fill(
        "When an order is paid, WhatsApp the customer after a short pause"
    )
    page.get_by_role("button", name="Draft", exact=True).click()
    expect(page.locator(".react-flow__node")).to_have_count(5)
    expect(card(page, "notify").locator(".card-notes")).to_contain_text("1 note")
    expect(card(page, "order_paid").locator(".card-notes")).to_contain_text("1 note")
    expect(page.get_by_role("list", name="Warnings")).to_contain_text("sandbox mode")

    # The canvas: node kinds drawn apart; a node's params with {{ }} highlighted, its task's
    # fields from GET /tools.
    page.get_by_role("link", name="Open in canvas").click()
    expect(page.get_by_role("heading", name="Order paid notice")).to_be_visible()
    for node_id, kind in [("order_paid", "trigger"), ("pause", "delay"), ("done", "end")]:
        expect(card(page, node_id)).to_have_class(f"card kind-{kind}")
    card(page, "notify").click()
    panel = page.get_by_test_id("node-panel")
    to = panel.locator("tr[data-field='to']")
    expect(to).to_contain_text("Recipient")  # the field's description from GET /tools
    expect(to.get_by_test_id("template-ref")).to_have_text("{{ trigger_data.phone }}")
    body = panel.locator("tr[data-field='body']")
    expect(body.get_by_test_id("template-ref")).to_have_text("{{ steps.compose.output.text }}")
    expect(panel.locator("tr[data-field='media_url']")).to_contain_text("not set")
    shot(page, "canvas.png")

    # Drag a node and save the positions as version 2.
    workflow_id = page.url.split("/ui/workflows/")[1].split("?")[0]
    box = card(page, "pause").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 + 160, box["y"] + box["height"] / 2, steps=8)
    page.mouse.up()
    page.get_by_role("button", name="Save positions").click()
    expect(page.get_by_role("status")).to_have_text("Saved as version 2.")
    saved = api(page, base_url, "GET", f"/workflows/{workflow_id}?version=2")
    before = api(page, base_url, "GET", f"/workflows/{workflow_id}?version=1")
    at = {n["id"]: n["position"] for n in saved["blueprint"]["nodes"]}
    was = {n["id"]: n["position"] for n in before["blueprint"]["nodes"]}
    assert at["pause"]["x"] > was["pause"]["x"] + 50
    assert at["compose"] == was["compose"]

    # Dry run: every node's resolved input and output.
    page.get_by_role("link", name="Dry run").click()
    page.get_by_label("Trigger payload (JSON)").fill(json.dumps(ORDER))
    page.get_by_role("button", name="Dry run").click()
    expect(page.get_by_test_id("dry-run-result")).to_contain_text("succeeded")
    expect(page.locator(".card[data-state='succeeded']")).to_have_count(5)
    card(page, "compose").click()
    expect(page.get_by_label("Output")).to_contain_text("Order A-1001 paid")

    # Activate version 2.
    page.get_by_role("link", name="Order paid notice").click()
    page.get_by_role("button", name="Activate v2").click()
    expect(page.get_by_test_id("active-state")).to_have_text("● active v2")

    # Fire the event; the run view shows the run move node by node, live.
    fired = api(page, base_url, "POST", "/events", {"name": "shop/order.paid", "data": ORDER})
    (run_id,) = fired["started_run_ids"]
    page.goto(f"{base_url}/ui/runs/{run_id}")
    expect(card(page, "compose")).to_have_attribute("data-state", "succeeded")
    expect(card(page, "pause")).to_have_attribute("data-state", "waiting")
    expect(card(page, "notify")).to_have_attribute("data-state", "pending")
    expect(page.get_by_test_id("run-status")).to_contain_text("waiting")
    shot(page, "run-live.png")
    page.reload()  # the view replays the stream and goes on live
    expect(card(page, "compose")).to_have_attribute("data-state", "succeeded")
    for node_id in ("order_paid", "compose", "pause", "notify", "done"):
        expect(card(page, node_id)).to_have_attribute("data-state", "succeeded", timeout=15000)
        expect(card(page, node_id).get_by_test_id("node-state")).to_have_text("✓ succeeded")
    expect(page.get_by_test_id("run-status")).to_contain_text("succeeded")
    expect(page.get_by_test_id("timeline").locator("li[data-node='notify']")).to_contain_text(
        "attempt 1"
    )
    shot(page, "run-done.png")


def test_open_a_failed_run_and_retry_it(page: Page, base_url: str) -> None:
    flaky = Peer()
    flaky.script["/flaky"] = [500, 200]
    try:
        blueprint = {
            "name": "Flaky call",
            "nodes": [
                {"id": "start", "type": "trigger"},
                {
                    "id": "call",
                    "type": "action",
                    "service": "http",
                    "task": "request",
                    "params": {"method": "POST", "url": f"{flaky.url}/flaky"},
                    "retry": {"max_attempts": 1},
                },
                {"id": "done", "type": "end"},
            ],
            "edges": [{"source": "start", "target": "call"}, {"source": "call", "target": "done"}],
        }
        sign_in(page, base_url)
        workflow = api(page, base_url, "POST", "/workflows", {"blueprint": blueprint})
        run_id = api(page, base_url, "POST", "/workflow/execute", {"workflow_id": workflow["id"]})[
            "run_id"
        ]
        page.goto(f"{base_url}/ui/runs/{run_id}")
        expect(page.get_by_test_id("run-status")).to_contain_text("failed")
        expect(card(page, "call")).to_have_attribute("data-state", "failed")
        expect(card(page, "call").get_by_test_id("node-state")).to_have_text("✕ failed")
        expect(card(page, "done")).to_have_attribute("data-state", "pending")
        expect(page.get_by_role("alert")).to_contain_text("HTTP 500")

        page.get_by_role("button", name="Retry from failed step").click()
        expect(page.get_by_test_id("run-status")).to_contain_text("succeeded")
        expect(card(page, "call")).to_have_attribute("data-state", "succeeded")
        expect(card(page, "done")).to_have_attribute("data-state", "succeeded")
        expect(page.get_by_role("button", name="Retry from failed step")).to_be_disabled()
        assert flaky.hits["/flaky"] == 2
    finally:
        flaky.close()


def make_workflow(page: Page, base_url: str, name: str, *, active: bool = False) -> str:
    blueprint = {
        "name": name,
        "nodes": [
            {"id": "start", "type": "trigger", "position": {"x": 0, "y": 0}},
            {"id": "done", "type": "end", "position": {"x": 0, "y": 140}},
        ],
        "edges": [{"source": "start", "target": "done"}],
    }
    workflow_id: str = api(page, base_url, "POST", "/workflows", {"blueprint": blueprint})["id"]
    if active:
        api(page, base_url, "POST", f"/workflows/{workflow_id}/activate")
    return workflow_id


def test_workflows_list_searches_and_runs_list_is_live(page: Page, base_url: str) -> None:
    sign_in(page, base_url)
    receipts = make_workflow(page, base_url, "Receipts for payments", active=True)
    weekly = make_workflow(page, base_url, "Weekly report")

    page.get_by_role("link", name="Workflows").click()
    rows = page.locator("table.list tbody tr")
    expect(rows).to_have_count(2)
    page.get_by_role("searchbox").fill("receipt")
    page.get_by_role("button", name="Search").click()
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("Receipts for payments")
    expect(rows).to_contain_text("active")
    expect(rows).to_contain_text("never")  # no run yet
    page.get_by_role("searchbox").fill("")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("combobox").select_option("false")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("Weekly report")

    # The runs list is live: a run started elsewhere appears and turns succeeded by itself.
    page.get_by_role("link", name="Runs").click()
    expect(page.get_by_test_id("stream-state")).to_have_text("● live")
    expect(page.get_by_text("No runs.")).to_be_visible()
    run_id = api(page, base_url, "POST", "/workflow/execute", {"workflow_id": receipts})["run_id"]
    row = page.locator(f"tr[data-run='{run_id}']")
    expect(row).to_contain_text("Receipts for payments")
    expect(row).to_contain_text("succeeded")
    page.get_by_label("Status").select_option("failed")
    expect(page).to_have_url(f"{base_url}/ui/runs?status=failed")
    expect(page.get_by_text("No runs with status failed.")).to_be_visible()
    page.get_by_label("Status").select_option("succeeded")
    expect(row).to_be_visible()

    # A workflow's own runs.
    api(page, base_url, "POST", "/workflow/execute", {"workflow_id": weekly})
    page.goto(f"{base_url}/ui/workflows/{weekly}/runs")
    expect(page.locator("tr[data-run]")).to_have_count(1)
    expect(page.locator("tr[data-run]")).to_contain_text("Weekly report")

    # And the workflows list shows the last run; an archived workflow leaves it.
    page.get_by_role("link", name="Workflows").click()
    receipts_row = rows.filter(has_text="Receipts for payments")
    expect(receipts_row).to_contain_text("succeeded")
    rows.filter(has_text="Weekly report").get_by_role("link", name="Weekly report").click()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Archive").click()
    expect(page).to_have_url(f"{base_url}/ui/workflows")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("Receipts for payments")


def test_revise_by_instruction_and_compare_versions(
    page: Page, base_url: str, model: Model
) -> None:
    sign_in(page, base_url)  # lands on the workflows list: draft from its prompt box
    page.get_by_label("Describe a new workflow").fill("Tell the customer when paid")
    page.get_by_role("button", name="Draft it").click()
    page.get_by_role("link", name="Open in canvas").click()
    expect(page.locator(".react-flow__node")).to_have_count(5)

    revised = json.loads(json.dumps(ORDER_DRAFT))
    revised["nodes"] = [n for n in revised["nodes"] if n["id"] != "pause"]
    revised["edges"] = [
        edge("order_paid", "compose"),
        edge("compose", "notify"),
        edge("notify", "done"),
    ]
    model.draft = revised
    try:
        page.get_by_label("Revise by instruction").fill("send it right away, no pause")
        page.get_by_role("button", name="Revise").click()
        expect(page.get_by_role("status")).to_have_text("Revised: version 2.")
        expect(page.locator(".react-flow__node")).to_have_count(4)
    finally:
        model.draft = ORDER_DRAFT

    page.get_by_text("Version history (2)").click()
    page.get_by_role("button", name="changes from v1").click()
    diff = page.get_by_test_id("version-diff")
    expect(diff).to_contain_text("Removed: - pause")
    expect(diff).to_contain_text("Edges added: + compose→notify")
    page.get_by_label("Version").select_option("1")
    expect(page.locator(".react-flow__node")).to_have_count(5)


def test_conversations_show_messages_live(page: Page, base_url: str, database_url: str) -> None:
    import psycopg

    from blueprint_engine.store.accounts import LOCAL_USER_ID

    with psycopg.connect(database_url, autocommit=True) as conn:
        (session_id,) = conn.execute(
            "insert into sessions (owner_id, channel, user_ref, summary, summary_source)"
            " values (%s, 'whatsapp', 'whatsapp:+919876543210', 'Asked for a payment link',"
            " 'model') returning id",
            (LOCAL_USER_ID,),
        ).fetchone()
        conn.execute(
            "insert into session_messages (owner_id, session_id, direction, text)"
            " values (%s, %s, 'in', 'send a payment link for 500')",
            (LOCAL_USER_ID, session_id),
        )
    sign_in(page, base_url)
    page.get_by_role("link", name="Conversations").click()
    page.get_by_role("link", name="whatsapp:+919876543210").click()
    conversation = page.get_by_role("article")
    expect(conversation).to_contain_text("Asked for a payment link")
    expect(conversation).to_contain_text("send a payment link for 500")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "insert into session_messages (owner_id, session_id, direction, text)"
            " values (%s, %s, 'out', 'Here is your link')",
            (LOCAL_USER_ID, session_id),
        )
    expect(conversation.locator(".msg-out")).to_contain_text("Here is your link")


AXE = Path(__file__).resolve().parents[1] / "dashboard" / "node_modules" / "axe-core" / "axe.min.js"


def serious_violations(page: Page) -> list[str]:
    """axe-core's serious and critical violations on the page as it is now."""
    page.add_script_tag(path=str(AXE))
    results = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in results["violations"]
        if v["impact"] in ("serious", "critical")
    ]


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280x800", "390x844"])
def test_main_pages_are_accessible_and_fit_the_screen(
    browser: Browser, base_url: str, viewport: dict[str, int]
) -> None:
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    try:
        page.goto(f"{base_url}/")
        expect(page.get_by_role("textbox", name="API key")).to_be_visible()
        problems = {"sign-in": serious_violations(page)}
        sign_in(page, base_url)
        blueprint = json.loads((EXAMPLES / "payment_receipt" / "blueprint.json").read_text())
        workflow_id = api(page, base_url, "POST", "/workflows", {"blueprint": blueprint})["id"]
        payload = json.loads((EXAMPLES / "payment_receipt" / "payload.json").read_text())
        run_id = api(
            page,
            base_url,
            "POST",
            "/workflow/execute",
            {"workflow_id": workflow_id, "payload": payload},
        )["run_id"]
        api(page, base_url, "POST", "/credentials", RAZORPAY_CONNECTION)
        hook_id = api(page, base_url, "POST", "/workflows", {"blueprint": SHOP_HOOK})["id"]
        pages = {
            "workflows": ("/ui/workflows", "table.list"),
            "draft": ("/ui/new", "textarea"),
            "canvas": (f"/ui/workflows/{workflow_id}", ".react-flow__node"),
            "dry run": (f"/ui/workflows/{workflow_id}/dry-run", ".react-flow__node"),
            "webhook workflow": (f"/ui/workflows/{hook_id}", "[data-testid='hook-url']"),
            "runs": ("/ui/runs", "table.list"),
            "run": (f"/ui/runs/{run_id}", ".card[data-state='succeeded']"),
            "conversations": ("/ui/conversations", "h1"),
            "connections": ("/ui/connections", "[data-testid='webhook-url']"),
        }
        wide: dict[str, int] = {}
        for name, (path, ready) in pages.items():
            page.goto(f"{base_url}{path}")
            expect(page.locator(ready).first).to_be_visible()
            if name == "canvas":
                page.locator(".react-flow__node[data-id='send_receipt']").click()
                expect(page.get_by_test_id("node-panel")).to_be_visible()
                editable = page.locator(".react-flow__node.draggable").count()
                assert (editable > 0) == (viewport is DESKTOP), "the phone canvas is read-only"
            problems[name] = serious_violations(page)
            width = page.evaluate("document.documentElement.scrollWidth")
            if width > viewport["width"]:
                wide[name] = width
            if name == "run":
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / f"run-{viewport['width']}.png"))
        assert {k: v for k, v in problems.items() if v} == {}
        assert wide == {}, f"pages wider than the {viewport['width']} px screen: {wide}"
    finally:
        context.close()


def test_an_invalid_draft_shows_its_errors_on_the_node_and_field(
    page: Page, base_url: str, model: Model
) -> None:
    invalid = json.loads(json.dumps(ORDER_DRAFT))
    notify = next(n for n in invalid["nodes"] if n["id"] == "notify")
    notify["params_json"] = json.dumps({"body": "{{ steps.compose.output.text }}"})  # no "to"
    model.draft = invalid
    try:
        sign_in(page, base_url)
        page.get_by_role("link", name="New").click()
        page.get_by_label("Describe what should happen").fill("Tell them when it is paid")
        page.get_by_role("button", name="Draft", exact=True).click()
        expect(page.get_by_role("list", name="Validation errors")).to_contain_text("notify")
    finally:
        model.draft = ORDER_DRAFT
    expect(card(page, "notify").locator(".card-notes")).to_be_visible()
    expect(card(page, "compose").locator(".card-notes")).to_have_count(0)
    card(page, "notify").click()
    field = page.get_by_test_id("node-panel").locator("tr[data-field='to']")
    expect(field).to_have_class("field-error")


def test_cancel_a_waiting_run_from_the_run_view(page: Page, base_url: str) -> None:
    blueprint = {
        "name": "Long pause",
        "nodes": [
            {"id": "start", "type": "trigger"},
            {"id": "pause", "type": "delay", "duration": "1h"},
            {"id": "done", "type": "end"},
        ],
        "edges": [{"source": "start", "target": "pause"}, {"source": "pause", "target": "done"}],
    }
    sign_in(page, base_url)
    run_id = api(page, base_url, "POST", "/workflow/execute", {"blueprint": blueprint})["run_id"]
    page.goto(f"{base_url}/ui/runs/{run_id}")
    expect(card(page, "pause")).to_have_attribute("data-state", "waiting")
    expect(card(page, "pause").get_by_test_id("node-state")).to_have_text("‖ waiting")
    page.get_by_role("button", name="Cancel run").click()
    expect(page.get_by_test_id("run-status")).to_contain_text("cancelled")
    expect(page.get_by_role("button", name="Cancel run")).to_be_disabled()
    assert api(page, base_url, "GET", f"/runs/{run_id}")["status"] == "cancelled"


class SupabaseAuth:
    """Plays Supabase Auth (GoTrue) for supabase-js: password sign-in for one user, answering
    with an HS256 access token the API accepts (``SUPABASE_JWT_SECRET``); CORS for the page."""

    USER = "5e1f0000-0000-4000-8000-00000000abcd"
    EMAIL = "asha@example.com"
    PASSWORD = "correct horse"

    def __init__(self) -> None:
        self.sign_ins = 0
        auth = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, body: Any = None) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("access-control-allow-origin", "*")
                self.send_header("access-control-allow-headers", "*")
                self.send_header("access-control-allow-methods", "GET, POST, OPTIONS")
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_OPTIONS(self) -> None:
                self._send(204)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"] or 0)))
                if self.path.startswith("/auth/v1/logout"):
                    self._send(204)
                elif (body.get("email"), body.get("password")) == (auth.EMAIL, auth.PASSWORD):
                    auth.sign_ins += 1
                    self._send(200, auth.session())
                else:
                    self._send(
                        400,
                        {
                            "error": "invalid_grant",
                            "error_description": "Invalid login credentials",
                        },
                    )

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def session(self) -> dict[str, Any]:
        now = int(time.time())
        return {
            "access_token": token_for(self.USER, iss=f"{self.url}/auth/v1", email=self.EMAIL),
            "token_type": "bearer",
            "expires_in": 3600,
            "expires_at": now + 3600,
            "refresh_token": "refresh-1",
            "user": {
                "id": self.USER,
                "aud": "authenticated",
                "role": "authenticated",
                "email": self.EMAIL,
                "app_metadata": {"provider": "email"},
                "user_metadata": {},
                "created_at": "2026-01-01T00:00:00Z",
            },
        }

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_sign_in_with_supabase_auth(browser: Browser, database_url: str) -> None:
    gotrue = SupabaseAuth()
    settings = make_settings(
        database_url,
        supabase_url=gotrue.url,
        supabase_anon_key="anon-public-key",
        supabase_jwt_secret=JWT_SECRET,
    )
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    try:
        with serving(settings) as url:
            page.goto(f"{url}/")
            page.get_by_label("Email", exact=True).fill(gotrue.EMAIL)
            page.get_by_label("Password", exact=True).fill("wrong")
            page.get_by_role("button", name="Sign in", exact=True).first.click()
            expect(page.get_by_role("alert")).to_contain_text("Invalid login credentials")
            page.get_by_label("Password", exact=True).fill(gotrue.PASSWORD)
            page.get_by_role("button", name="Sign in", exact=True).first.click()
            expect(page.get_by_role("navigation", name="Main")).to_be_visible()
            expect(page.locator(".who")).to_contain_text(f"{gotrue.EMAIL} (token)")
            # The page's requests carry her token: her workflow is listed (none are without one).
            token = gotrue.session()["access_token"]
            created = page.request.post(
                f"{url}/workflows",
                headers={"Authorization": f"Bearer {token}"},
                data={
                    "blueprint": {"name": "Asha's flow", "nodes": [{"id": "t", "type": "trigger"}]}
                },
            )
            assert created.status == 201, created.text()
            page.get_by_role("link", name="Workflows").click()
            expect(page.get_by_role("link", name="Asha's flow")).to_be_visible()
            assert gotrue.sign_ins == 1
            page.get_by_role("button", name="Sign out").click()
            expect(page.get_by_label("Email", exact=True)).to_be_visible()
    finally:
        context.close()
        gotrue.close()


#: Secrets typed into the connection forms: the page's HTML must never hold them.
RZP_SECRET = "rzpKeySecret-7fQ2mX9pL4"
RZP_ROTATED = "rzpKeySecret-rotated-Hn3Kd8"
BEARER = "bearer-token-never-shown-0e1f"
SMTP_PASSWORD = "smtp-password-never-shown-5b2c"
#: A Razorpay connection as POST /credentials takes it.
RAZORPAY_CONNECTION = {
    "name": "shop_razorpay",
    "type": "razorpay",
    "data": {"key_id": "rzp_test_Shop0001", "key_secret": RZP_SECRET},
}


def assert_no_secret(page: Page) -> None:
    html = page.content()
    for secret in (RZP_SECRET, RZP_ROTATED, BEARER, SMTP_PASSWORD):
        assert secret not in html, "a secret is in the page's HTML"


def test_connections_add_replace_delete_and_a_workflows_missing_one(
    page: Page, base_url: str
) -> None:
    sign_in(page, base_url)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Connections").click()
    expect(page.get_by_text("No connections yet")).to_be_visible()

    # Add one from the form its type's JSON Schema draws: the secret is a password input; a
    # 422 shows its problem beside the field its loc names.
    form = page.get_by_role("form", name="Add connection")
    form.get_by_label("Type").select_option(label="Razorpay")
    expect(form.locator("[data-field]")).to_have_count(5)  # type, name, key id, key secret, webhook
    form.get_by_label("Name").fill("shop_razorpay")
    form.get_by_label("Key Id").fill("not-a-key-id")
    form.get_by_label("Key Secret").fill(RZP_SECRET)
    expect(form.get_by_label("Key Secret")).to_have_attribute("type", "password")
    expect(form.get_by_label("Webhook Secret")).to_have_attribute("type", "password")
    assert_no_secret(page)  # typed, it is in the input's value only, not in an attribute
    form.get_by_role("button", name="Save connection").click()
    key_id = form.locator("[data-field='key_id']")
    expect(key_id.get_by_test_id("field-problem")).to_contain_text("pattern")
    expect(form.get_by_label("Key Id")).to_have_attribute("aria-invalid", "true")
    expect(form.locator("[data-field='key_secret'] [data-testid='field-problem']")).to_have_count(0)
    expect(form.get_by_label("Key Secret")).to_have_value(RZP_SECRET)  # kept for the retry
    assert_no_secret(page)
    form.get_by_label("Key Id").fill("rzp_test_Shop0001")
    form.get_by_role("button", name="Save connection").click()
    expect(page.get_by_role("status").first).to_have_text('Saved "shop_razorpay".')

    # Listed with its type, masked hint and webhook URL (copied by its button); never the secret.
    (stored,) = api(page, base_url, "GET", "/credentials")
    row = page.locator("tr[data-credential='shop_razorpay']")
    expect(row).to_contain_text("Razorpay")
    expect(row.get_by_test_id("hint")).to_have_text(f"rzp_test_Shop0001 · ••••{RZP_SECRET[-4:]}")
    expect(row).to_contain_text("never")  # not used yet
    webhook = f"/webhooks/razorpay/{stored['id']}"
    expect(row.get_by_test_id("webhook-url")).to_have_text(stored["webhook_url"])
    assert stored["webhook_url"].endswith(webhook)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base_url)
    row.get_by_role("button", name="Copy the webhook URL").click()
    expect(row.get_by_role("status")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == stored["webhook_url"]
    expect(form.get_by_label("Key Secret")).to_have_value("")  # the form is emptied
    assert_no_secret(page)
    shot(page, "connections.png")

    # Replace the secret (PUT): the hint shows the new one's tail.
    row.get_by_role("button", name="Replace secret").click()
    replace = page.get_by_role("form", name="Replace secret of shop_razorpay")
    replace.get_by_label("Key Id").fill("rzp_test_Shop0001")
    replace.get_by_label("Key Secret").fill(RZP_ROTATED)
    replace.get_by_role("button", name="Save new secret").click()
    expect(page.get_by_role("status").first).to_have_text('Replaced the secret of "shop_razorpay".')
    expect(row.get_by_test_id("hint")).to_have_text(f"rzp_test_Shop0001 · ••••{RZP_ROTATED[-4:]}")
    expect(replace).to_have_count(0)
    assert_no_secret(page)

    # An active workflow names it: deleting is refused, listing the workflow as a link.
    blueprint = {
        "name": "Payment links",
        "nodes": [
            {"id": "start", "type": "trigger", "position": {"x": 0, "y": 0}},
            {
                "id": "link",
                "type": "action",
                "service": "razorpay",
                "task": "create_payment_link",
                "params": {"amount": 50000},
                "credential": "shop_razorpay",
                "position": {"x": 0, "y": 140},
            },
            {"id": "done", "type": "end", "position": {"x": 0, "y": 280}},
        ],
        "edges": [{"source": "start", "target": "link"}, {"source": "link", "target": "done"}],
    }
    workflow_id = api(page, base_url, "POST", "/workflows", {"blueprint": blueprint})["id"]
    api(page, base_url, "POST", f"/workflows/{workflow_id}/activate")
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Delete").click()
    refusal = page.get_by_role("alert")
    expect(refusal).to_contain_text("used by active workflow(s) 'Payment links'")
    expect(row).to_be_visible()
    refusal.get_by_role("link", name="Payment links").click()

    # The workflow's page: the connection it needs is present; the node names it.
    expect(page).to_have_url(f"{base_url}/ui/workflows/{workflow_id}")
    needed = page.get_by_test_id("needed-connections")
    expect(needed).to_contain_text("all present")
    card(page, "link").click()
    named = page.get_by_test_id("node-panel").get_by_test_id("node-credential")
    expect(named).to_contain_text("Connection: shop_razorpay")
    expect(named).to_contain_text("present")

    # Deactivated, it can be deleted; then the workflow shows it missing, on the node too.
    page.get_by_role("button", name="Deactivate").click()
    expect(page.get_by_test_id("active-state")).to_have_text("○ inactive")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Connections").click()
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Delete").click()
    expect(page.get_by_role("status").first).to_have_text('Deleted "shop_razorpay".')
    expect(row).to_have_count(0)
    assert api(page, base_url, "GET", "/credentials") == []

    page.goto(f"{base_url}/ui/workflows/{workflow_id}")
    expect(needed).to_contain_text("1 missing")
    expect(needed.locator("li[data-credential='shop_razorpay']")).to_contain_text("missing")
    expect(card(page, "link").locator(".card-notes")).to_be_visible()
    card(page, "link").click()
    expect(named).to_contain_text("missing")
    shot(page, "workflow-missing-connection.png")

    # Its link opens the add form with the name and type filled in.
    needed.get_by_role("link", name="Add connection shop_razorpay").click()
    form = page.get_by_role("form", name="Add connection")
    expect(form.get_by_label("Name")).to_have_value("shop_razorpay")
    expect(form.get_by_label("Type")).to_have_value("razorpay")
    assert_no_secret(page)


def test_without_a_key_the_connection_form_says_how_to_make_one(
    page: Page, database_url: str
) -> None:
    with serving(make_settings(database_url, api_keys=[KEY])) as url:  # no credentials_key
        sign_in(page, url)
        page.goto(f"{url}/ui/connections?type=http_bearer")
        form = page.get_by_role("form", name="Add connection")
        form.get_by_label("Name").fill("api")
        form.get_by_label("Token").fill(BEARER)
        form.get_by_role("button", name="Save connection").click()
        expect(form.get_by_test_id("key-missing")).to_contain_text(
            "set CREDENTIALS_KEY to a Fernet key"
        )
        expect(form.get_by_test_id("key-missing").locator("code")).to_have_text(
            "wf credentials new-key"
        )
        assert_no_secret(page)


#: A saved workflow another one calls: greets ``trigger_data.name``.
GREETER = {
    "name": "Greet one guest",
    "nodes": [
        {"id": "start", "type": "trigger"},
        {
            "id": "line",
            "type": "action",
            "service": "transform",
            "task": "build",
            "params": {"fields": {"text": "Welcome, {{ trigger_data.name }}"}},
        },
        {"id": "done", "type": "end", "output": "{{ steps.line.output.text }}"},
    ],
    "edges": [{"source": "start", "target": "line"}, {"source": "line", "target": "done"}],
}


def guest_list(greeter_id: str) -> dict[str, Any]:
    """Three guests from a step, a foreach over them (a body of two nodes without positions:
    wait for the guest's arrival, then make their badge), then a workflow node that runs the
    greeter as a child run, and a foreach that runs it once per speaker."""
    return {
        "name": "Welcome the guests",
        "nodes": [
            {"id": "start", "type": "trigger"},
            {
                "id": "guests",
                "type": "action",
                "service": "transform",
                "task": "build",
                "params": {"fields": {"names": ["Asha", "Ravi", "Meera"]}},
            },
            {
                "id": "each",
                "type": "foreach",
                "name": "Each guest",
                "items": "{{ steps.guests.output.names }}",
                "body": {
                    "nodes": [
                        {
                            "id": "arrive",
                            "type": "wait_for_event",
                            "event": "guest/arrived",
                            "match": "event.data.name == item",
                            "timeout": "1h",
                        },
                        {
                            "id": "badge",
                            "type": "action",
                            "service": "transform",
                            "task": "build",
                            "params": {"fields": {"name": "{{ item }}", "seat": "{{ index }}"}},
                        },
                    ],
                    "edges": [{"source": "arrive", "target": "badge"}],
                },
            },
            {
                "id": "greet",
                "type": "workflow",
                "name": "Greet the host",
                "workflow_id": greeter_id,
                "input": {"name": "Host"},
            },
            {
                "id": "speakers",
                "type": "foreach",
                "items": [{"name": "Dev"}, {"name": "Noor"}],
                "workflow": {"workflow_id": greeter_id},
            },
            {"id": "done", "type": "end"},
        ],
        "edges": [
            {"source": "start", "target": "guests"},
            {"source": "guests", "target": "each"},
            {"source": "each", "target": "greet"},
            {"source": "greet", "target": "speakers"},
            {"source": "speakers", "target": "done"},
        ],
    }


def inside(inner: Any, outer: Any) -> bool:
    a, b = inner.bounding_box(), outer.bounding_box()
    assert a is not None and b is not None
    return (
        a["x"] >= b["x"]
        and a["y"] >= b["y"]
        and a["x"] + a["width"] <= b["x"] + b["width"]
        and a["y"] + a["height"] <= b["y"] + b["height"]
    )


def test_a_foreach_and_a_workflow_node_on_the_canvas_and_in_a_run(
    page: Page, base_url: str
) -> None:
    sign_in(page, base_url)
    greeter = api(page, base_url, "POST", "/workflows", {"blueprint": GREETER})["id"]
    api(page, base_url, "POST", f"/workflows/{greeter}/activate")
    workflow_id = api(page, base_url, "POST", "/workflows", {"blueprint": guest_list(greeter)})[
        "id"
    ]

    # The canvas: the loop is a group with its body drawn inside, clear of the next node; the
    # workflow node names the workflow it runs and links to it.
    page.goto(f"{base_url}/ui/workflows/{workflow_id}")
    expect(page.locator(".react-flow__node")).to_have_count(8)
    loop = card(page, "each")
    expect(loop).to_contain_text("For each")
    expect(loop).to_contain_text("for each item of {{ steps.guests.output.names }}")
    for body_node in ("arrive", "badge"):
        assert inside(card(page, body_node), loop), f"{body_node} is drawn outside its loop"
    loop_box, greet_box = loop.bounding_box(), card(page, "greet").bounding_box()
    assert loop_box is not None and greet_box is not None
    assert greet_box["y"] > loop_box["y"] + loop_box["height"], "the next node is under the loop"
    called = card(page, "greet").get_by_test_id("workflow-link")
    expect(called).to_have_text("Greet one guest")
    loop.locator(".card-name").click()
    panel = page.get_by_test_id("node-panel")
    expect(panel.locator("tr[data-field='concurrency']")).to_contain_text("Items run at once.")
    expect(panel.locator("tr[data-field='items']").get_by_test_id("template-ref")).to_have_text(
        "{{ steps.guests.output.names }}"
    )
    assert serious_violations(page) == []
    shot(page, "foreach-canvas.png")
    called.click()
    expect(page).to_have_url(f"{base_url}/ui/workflows/{greeter}")
    expect(page.get_by_role("heading", name="Greet one guest")).to_be_visible()

    # Run it: the loop goes item by item, as the guests arrive, and shows each item's steps.
    page.goto(f"{base_url}/ui/workflows/{workflow_id}")
    page.get_by_role("button", name="Run now").click()
    progress = loop.get_by_test_id("loop-progress")
    expect(progress).to_have_text("0/3 items")
    expect(loop).to_have_attribute("data-state", "waiting")
    expect(card(page, "arrive")).to_have_attribute("data-state", "waiting")
    expect(card(page, "badge")).to_have_attribute("data-state", "pending")
    picker = page.get_by_label("Item shown in Each guest")
    expect(picker).to_have_value("0")
    parent_url = page.url
    api(page, base_url, "POST", "/events", {"name": "guest/arrived", "data": {"name": "Asha"}})
    expect(progress).to_have_text("1/3 items")
    expect(picker).to_have_value("1")  # it follows the item in progress
    expect(card(page, "arrive")).to_have_attribute("data-state", "waiting")
    picker.select_option("0")
    expect(card(page, "badge")).to_have_attribute("data-state", "succeeded")
    shot(page, "foreach-run-live.png")
    timeline = page.get_by_test_id("timeline")
    for index, guest in ((1, "Ravi"), (2, "Meera")):
        waiting = timeline.locator(f"li[data-step='each.{index}.arrive'][data-status='waiting']")
        expect(waiting).to_have_count(1)  # the item waits for its guest: now they may come
        api(page, base_url, "POST", "/events", {"name": "guest/arrived", "data": {"name": guest}})
        expect(progress).to_have_text(f"{index + 1}/3 items")
    expect(page.get_by_test_id("run-status")).to_contain_text("succeeded")
    expect(progress).to_have_text("3/3 items")
    expect(loop).to_have_attribute("data-state", "succeeded")
    picker.select_option("1")  # the second guest
    expect(card(page, "badge")).to_have_attribute("data-state", "succeeded")
    card(page, "badge").click()
    expect(panel.get_by_label("Output")).to_contain_text('"name": "Ravi"')
    loop.locator(".card-name").click()
    items = panel.get_by_test_id("loop-items")
    expect(items.locator("tr[data-item]")).to_have_count(3)
    expect(items.locator("tr[data-item='2']")).to_contain_text("succeeded")
    items.locator("tr[data-item='2']").get_by_role("button").click()
    expect(picker).to_have_value("2")
    expect(timeline.locator("li[data-step='each.2.badge']")).to_have_count(1)
    assert serious_violations(page) == []
    shot(page, "foreach-run.png")

    # A foreach over a saved workflow: each item is a child run, listed in its panel.
    speakers = card(page, "speakers")
    expect(speakers.get_by_test_id("loop-progress")).to_have_text("2/2 items")
    expect(speakers.get_by_test_id("workflow-link")).to_have_text("Greet one guest")
    speakers.locator(".card-name").click()
    speaker_runs = panel.get_by_test_id("loop-items").get_by_test_id("child-run-link")
    expect(speaker_runs).to_have_count(2)
    expect(speaker_runs.first).to_contain_text("succeeded")

    # The workflow node links to its child run, which links back.
    child_link = card(page, "greet").get_by_test_id("child-run-link")
    expect(child_link).to_contain_text("succeeded")
    child_link.click()
    expect(page.get_by_test_id("parent-run")).to_contain_text("at step greet")
    expect(page.get_by_test_id("run-status")).to_contain_text("succeeded")
    expect(page.get_by_role("link", name="Greet one guest")).to_be_visible()
    child_id = page.url.split("/ui/runs/")[1]
    child = api(page, base_url, "GET", f"/runs/{child_id}")
    assert child["output"] == "Welcome, Host"
    assert f"{base_url}/ui/runs/{child['parent_run_id']}" == parent_url
    page.get_by_test_id("parent-run").get_by_role("link").click()
    expect(page).to_have_url(parent_url)


#: A webhook workflow that posts to Slack, emails and publishes to Instagram (all in sandbox
#: mode: no connection, no deployment settings) what the request's body says.
SHOP_HOOK = {
    "name": "Shop orders",
    "nodes": [
        {"id": "start", "type": "trigger", "trigger": "webhook", "position": {"x": 0, "y": 0}},
        {
            "id": "tell",
            "type": "action",
            "service": "slack",
            "task": "post_message",
            "params": {
                "channel": "#orders",
                "text": "Order {{ trigger_data.body.order.id }}"
                " for {{ trigger_data.body['customer'] }}",
            },
            "position": {"x": 0, "y": 140},
        },
        {
            "id": "mail",
            "type": "action",
            "service": "email",
            "task": "send",
            "params": {
                "to": ["orders@example.com"],
                "subject": "Order {{ trigger_data.body.order.id }}",
                "text": "Thanks!",
            },
            "position": {"x": 0, "y": 280},
        },
        {
            "id": "post",
            "type": "action",
            "service": "instagram",
            "task": "publish_post",
            "params": {"image_url": "https://cdn.example.com/{{ trigger_data.body.order.id }}.jpg"},
            "position": {"x": 0, "y": 420},
        },
        {
            "id": "done",
            "type": "end",
            "output": {"order": "{{ trigger_data.body.order.id }}"},
            "position": {"x": 0, "y": 560},
        },
    ],
    "edges": [
        {"source": "start", "target": "tell"},
        {"source": "tell", "target": "mail"},
        {"source": "mail", "target": "post"},
        {"source": "post", "target": "done"},
    ],
}
#: The signing secret of the signed hook (a ``webhook_secret`` connection).
HOOK_SECRET = "hook-signing-secret-3e9a71c2"


def curl_parts(panel: Locator) -> tuple[str, str]:
    """The URL and body of the hook panel's curl example, as a user would copy them."""
    text = panel.get_by_test_id("hook-curl").inner_text()
    url = re.search(r"^HOOK='([^']*)'$", text, re.M)
    body = re.search(r"^BODY='([^']*)'$", text, re.M)
    assert url and body, text
    return url.group(1), body.group(1)


def test_a_webhook_workflows_url_rotated_shown_once_and_posted_to(
    page: Page, base_url: str, model: Model
) -> None:
    sign_in(page, base_url)
    saved = api(page, base_url, "POST", "/workflows", {"blueprint": SHOP_HOOK})
    workflow_id, first_token = saved["id"], saved["hook"]["path"].rsplit("/", 1)[1]
    api(page, base_url, "POST", f"/workflows/{workflow_id}/activate")

    # The hook: the URL with its token hidden, live, unsigned, never used; no full URL to copy.
    page.goto(f"{base_url}/ui/workflows/{workflow_id}")
    panel = page.get_by_test_id("hook-panel")
    url = panel.get_by_test_id("hook-url")
    expect(url).to_have_text(f"{base_url}/hooks/{workflow_id}/{first_token[:4]}…")
    expect(panel.get_by_test_id("hook-live")).to_contain_text("live · a POST to it starts a run")
    expect(panel.get_by_test_id("hook-signed")).to_contain_text("not checked")
    expect(panel.get_by_test_id("hook-last-used")).to_have_text("never")
    expect(panel.get_by_role("button", name="Copy URL")).to_be_disabled()
    assert first_token not in page.content()

    # Its actions drawn with their services' icons and labels.
    for node_id, icon, label in [
        ("tell", "#", "Slack"),
        ("mail", "✉", "Email"),
        ("post", "◎", "Instagram"),
    ]:
        expect(card(page, node_id).locator(".card-icon")).to_have_text(icon)
        expect(card(page, node_id).locator(".card-kind")).to_have_text(label)

    # The curl example: a placeholder for the URL; a body with the fields the workflow reads.
    panel.get_by_text("Try it with curl").click()
    hook_line, body = curl_parts(panel)
    assert hook_line.startswith("<the full URL")
    assert json.loads(body) == {"order": {"id": "example"}, "customer": "example"}

    # Rotate: it asks first (Escape keeps the URL), then shows the new URL once, focused.
    rotate = panel.get_by_role("button", name="Rotate URL")
    rotate.click()
    dialog = page.get_by_role("alertdialog", name="Rotate this workflow's URL?")
    expect(dialog).to_contain_text("stops working at once")
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    expect(rotate).to_be_focused()
    rotate.click()
    assert serious_violations(page) == []
    dialog.get_by_role("button", name="Rotate now").click()
    expect(panel.get_by_test_id("hook-once")).to_contain_text("will not be shown again")
    expect(panel.get_by_role("group", name="Full URL")).to_be_focused()
    new_url = url.inner_text()
    new_token = new_url.rsplit("/", 1)[1]
    assert new_url == f"{base_url}/hooks/{workflow_id}/{new_token}"
    assert new_token != first_token
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base_url)
    panel.get_by_role("button", name="Copy URL").click()
    expect(panel.get_by_role("status").first).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == new_url
    assert serious_violations(page) == []
    shot(page, "hook-rotated.png")

    # The curl example now has the new URL; its body, posted there, starts a run. The old
    # URL is gone.
    hook_line, body = curl_parts(panel)
    assert hook_line == new_url
    headers = {"content-type": "application/json"}
    old = page.request.post(
        f"{base_url}/hooks/{workflow_id}/{first_token}", data=body, headers=headers
    )
    assert old.status == 404, old.text()
    started = page.request.post(new_url, data=body, headers=headers)
    assert started.status == 202, started.text()
    run_id = started.json()["run_id"]
    panel.get_by_role("button", name="Hide it").click()
    expect(rotate).to_be_focused()
    expect(url).to_have_text(f"{base_url}/hooks/{workflow_id}/{new_token[:4]}…")
    page.get_by_role("toolbar", name="Workflow actions").get_by_role("link", name="Runs").click()
    expect(page.locator(f"tr[data-run='{run_id}']")).to_contain_text("succeeded")
    run = api(page, base_url, "GET", f"/runs/{run_id}")
    assert run["output"] == {"order": "example"}

    # Shown once: back on the page, the URL is a hint again and cannot be copied.
    page.goto(f"{base_url}/ui/workflows/{workflow_id}")
    expect(url).to_have_text(f"{base_url}/hooks/{workflow_id}/{new_token[:4]}…")
    expect(panel.get_by_test_id("hook-last-used")).not_to_have_text("never")
    expect(panel.get_by_role("button", name="Copy URL")).to_be_disabled()
    assert new_token not in page.content()

    # A signed hook: its curl example signs the body in the trigger's header, as the hook checks.
    api(
        page,
        base_url,
        "POST",
        "/credentials",
        {"name": "shop_hook", "type": "webhook_secret", "data": {"secret": HOOK_SECRET}},
    )
    signed = json.loads(json.dumps(SHOP_HOOK))
    signed["name"] = "Signed shop orders"
    signed["nodes"][0].update(credential="shop_hook", signature_header="X-Shop-Signature")
    saved = api(page, base_url, "POST", "/workflows", {"blueprint": signed})
    api(page, base_url, "POST", f"/workflows/{saved['id']}/activate")
    page.goto(f"{base_url}/ui/workflows/{saved['id']}")
    expect(panel.get_by_test_id("hook-signed")).to_contain_text(
        "HMAC-SHA256 of the body in X-Shop-Signature, keyed with connection shop_hook"
    )
    panel.get_by_text("Try it with curl").click()
    curl = panel.get_by_test_id("hook-curl")
    expect(curl).to_contain_text('-H "X-Shop-Signature: sha256=$SIG"')
    expect(curl).to_contain_text('openssl dgst -sha256 -hmac "$HOOK_SECRET"')
    _, body = curl_parts(panel)
    hook_url = f"{base_url}{saved['hook']['path']}"
    unsigned = page.request.post(hook_url, data=body, headers=headers)
    assert unsigned.status == 401, unsigned.text()
    signature = hmac.new(HOOK_SECRET.encode(), body.encode(), hashlib.sha256).hexdigest()
    started = page.request.post(
        hook_url, data=body, headers={**headers, "X-Shop-Signature": f"sha256={signature}"}
    )
    assert started.status == 202, started.text()

    # A drafted webhook workflow has no URL until activated here: that shows it, once.
    model.draft = {
        "name": "Drafted hook",
        "description": "A hook that ends",
        "nodes": [node("start", "trigger", trigger="webhook"), node("done", "end")],
        "edges": [edge("start", "done")],
    }
    try:
        draft = api(page, base_url, "POST", "/workflow/draft", {"prompt": "a hook that ends"})
    finally:
        model.draft = ORDER_DRAFT
    page.goto(f"{base_url}/ui/workflows/{draft['workflow_id']}")
    expect(panel).to_contain_text("No URL yet")
    page.get_by_role("button", name="Activate v1").click()
    expect(panel.get_by_test_id("hook-once")).to_contain_text("will not be shown again")
    made = url.inner_text()
    assert made.startswith(f"{base_url}/hooks/{draft['workflow_id']}/")
    assert page.request.post(made, data="{}", headers=headers).status == 202


def test_an_smtp_connection_through_the_form(page: Page, base_url: str, database_url: str) -> None:
    import psycopg

    sign_in(page, base_url)
    page.goto(f"{base_url}/ui/connections?type=smtp")
    form = page.get_by_role("form", name="Add connection")
    expect(form.get_by_label("Type")).to_have_value("smtp")
    expect(form).to_contain_text("Used by: email.")
    # type, name, host, port, security, username, password, from address, from name
    expect(form.locator("[data-field]")).to_have_count(9)
    expect(form.get_by_label("Security")).to_have_value("starttls")  # its default, chosen
    expect(form.get_by_label("Port")).to_have_attribute("type", "number")
    expect(form.get_by_label("Password")).to_have_attribute("type", "password")
    form.get_by_label(re.compile("^Name")).fill("shop_mail")
    form.get_by_label("Host").fill("smtp.example.com")
    form.get_by_label("Port").fill("465")
    form.get_by_label("Security").select_option("tls")
    form.get_by_label("Username").fill("orders@example.com")
    form.get_by_label("Password").fill(SMTP_PASSWORD)
    form.get_by_label("From address").fill("orders@example.com")
    assert_no_secret(page)
    form.get_by_role("button", name="Save connection").click()
    expect(page.get_by_role("status").first).to_have_text('Saved "shop_mail".')
    row = page.locator("tr[data-credential='shop_mail']")
    expect(row).to_contain_text("SMTP (email)")
    expect(row.get_by_test_id("hint")).to_have_text(
        f"smtp.example.com · orders@example.com · ••••{SMTP_PASSWORD[-4:]}"
    )
    expect(form.get_by_label("Password")).to_have_value("")
    assert_no_secret(page)

    # A type used by a trigger, not a tool, says so; a list field is typed comma-separated.
    form.get_by_label("Type").select_option("webhook_secret")
    expect(form).to_contain_text("Used by: webhook triggers.")
    form.get_by_label("Type").select_option("http_bearer")
    form.get_by_label(re.compile("^Name")).fill("shop_api")
    form.get_by_label("Allowed hosts").fill("api.example.com, .example.org")
    form.get_by_label("Token").fill(BEARER)
    form.get_by_role("button", name="Save connection").click()
    expect(page.get_by_role("status").first).to_have_text('Saved "shop_api".')
    assert_no_secret(page)

    # What was stored: the port a number, the choice and the list as chosen.
    vault = Vault(SecretStr(CREDENTIALS_KEY))
    with psycopg.connect(database_url) as conn:
        stored: dict[str, str] = dict(
            conn.execute("select name, secret from credentials").fetchall()
        )
    mail = vault.decrypt(stored["shop_mail"])
    assert (mail["port"], mail["security"], mail["password"]) == (465, "tls", SMTP_PASSWORD)
    api_key = vault.decrypt(stored["shop_api"])
    assert api_key["allowed_hosts"] == ["api.example.com", ".example.org"]

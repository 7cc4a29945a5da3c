"""Property-based tests of the whole HTTP surface: schemathesis (pytest integration) for every
documented operation, and hypothesis for what the schema cannot describe — signed webhook bodies.

Every operation in ``/openapi.json`` gets generated requests, valid and invalid for its schema
(``GenerationMode.POSITIVE`` and ``NEGATIVE``: wrong types, missing fields, NUL bytes, odd
Unicode, huge numbers), against the API on real PostgreSQL with the webhook secrets set. No
answer may be a 5xx other than the documented 503s, and every error answer is the JSON error
body with a ``code`` and a ``message``. Bounded to ``MAX_EXAMPLES`` per operation (about a
minute in all on a 2-core machine); the figures are printed in pytest's summary.

The app runs without its embedded runner and scheduler: this is about what requests do, and a
background runner would outlive the module (schemathesis keeps the app's lifespan open).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from twilio.request_validator import RequestValidator

from blueprint_engine.app import create_app
from tests.conftest import SUMMARY, WEBHOOK_SECRET, make_settings, suite_database_url

MAX_EXAMPLES = 60
#: 503s the API documents: something it needs is down or not configured.
DOCUMENTED_503 = {
    "database_unavailable",
    "engine_unavailable",
    "llm_not_configured",
    "webhook_not_configured",
    "whatsapp_not_configured",
}
FIGURES: Counter[str] = Counter()


JWT_SECRET = "fuzz-jwt-secret-of-at-least-thirty-two-bytes"
APP = create_app(
    make_settings(
        suite_database_url(),
        run_worker=False,
        run_scheduler=False,
        tools={
            "twilio": {"auth_token": "twilio-auth-token"},
            "razorpay": {"webhook_secret": WEBHOOK_SECRET},
        },
        supabase_jwt_secret=JWT_SECRET,
    )
)
#: Requests carry a valid user's token half of the time (to reach past authentication), and
#: whatever credentials schemathesis generates the other half.
USER_TOKEN = jwt.encode(
    {"sub": str(uuid.uuid4()), "aud": "authenticated", "exp": int(time.time()) + 86_400},
    JWT_SECRET,
    algorithm="HS256",
)
_CREDENTIALS = ("authorization", "x-api-key", "x-user-id")
#: The SSE streams answer 200 with a stream that does not end while there is something to
#: watch, so a generated call could wait forever; their 4xx answers (unknown or another user's
#: ids, malformed Last-Event-ID, negative last_id) are tested in tests/test_stream.py and
#: tests/test_ownership.py.
schema = schemathesis.openapi.from_dict(APP.openapi()).exclude(path_regex=r"/stream$")
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
    max_examples=MAX_EXAMPLES,
    database="none",
)


@pytest.fixture(scope="module", autouse=True)
def figures(database_url: str) -> Iterator[None]:
    """The test database exists before the app's lifespan starts (at the first call); the
    figures are reported at the end."""
    yield
    counts = {"cases", "signed webhooks"}
    answers = ", ".join(f"{k}: {v}" for k, v in sorted(FIGURES.items()) if k not in counts)
    SUMMARY.append(
        f"API fuzzing: {FIGURES['cases']} schemathesis requests and "
        f"{FIGURES['signed webhooks']} signed webhook deliveries; answers {answers}"
    )


@schema.parametrize()
def test_no_request_gets_a_server_error(case: Any) -> None:
    if case.headers is not None and FIGURES["cases"] % 2 == 0:
        for name in [h for h in case.headers if h.lower() in _CREDENTIALS]:
            del case.headers[name]
        case.headers["Authorization"] = f"Bearer {USER_TOKEN}"
    response = case.call(app=APP)
    FIGURES["cases"] += 1
    if response.status_code < 400:
        FIGURES[f"{response.status_code // 100}xx"] += 1
        return
    where = f"{case.method} {case.formatted_path}: {case.as_curl_command()}"
    content_type = response.headers.get("content-type", [""])
    content_type = content_type[0] if isinstance(content_type, list) else content_type
    assert "json" in content_type, f"{where} -> {response.status_code} not JSON"
    error = json.loads(response.content).get("error", {})
    assert error.get("code") and error.get("message"), f"{where} -> {response.content!r}"
    FIGURES[f"{response.status_code} {error['code']}"] += 1
    if response.status_code >= 500:
        assert response.status_code == 503 and error["code"] in DOCUMENTED_503, (
            f"{where} -> {response.status_code} {response.content!r}"
        )


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
RAZORPAY_BODIES = st.one_of(
    JSON.map(lambda value: json.dumps(value).encode()),
    st.fixed_dictionaries({"event": st.text(max_size=30), "payload": JSON}).map(
        lambda value: json.dumps(value).encode()
    ),
    st.binary(max_size=200),
)
TWILIO_FORMS = st.dictionaries(
    st.sampled_from(["MessageSid", "From", "Body", "NumMedia", "MediaUrl0", "MediaContentType0"])
    | st.text(max_size=10),
    st.text(max_size=40),
    max_size=6,
)
FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def signed_client(database_url: str) -> Iterator[TestClient]:
    with TestClient(APP) as client:
        yield client


def _expect_handled(response: Any, what: str) -> None:
    FIGURES["signed webhooks"] += 1
    FIGURES[f"signed webhook {response.status_code}"] += 1
    assert response.status_code < 500 or (
        response.status_code == 503 and response.json()["error"]["code"] in DOCUMENTED_503
    ), f"{what} -> {response.status_code} {response.text}"


@FUZZ
@given(body=RAZORPAY_BODIES)
def test_any_signed_razorpay_body_is_handled(signed_client: TestClient, body: bytes) -> None:
    """Bodies that pass the signature check: arbitrary JSON (NaN, deep, odd keys), events with
    any name and payload, raw bytes. Never a 5xx."""
    signature = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    response = signed_client.post(
        "/webhooks/razorpay",
        content=body,
        headers={"content-type": "application/json", "x-razorpay-signature": signature},
    )
    _expect_handled(response, f"razorpay {body!r}")


@FUZZ
@given(form=TWILIO_FORMS)
def test_any_signed_whatsapp_form_is_handled(
    signed_client: TestClient, form: dict[str, str]
) -> None:
    """Forms that pass the Twilio signature check, with any fields and values (NUL included).
    Never a 5xx."""
    settings_ = APP.state.settings
    url = settings_.public_base_url.rstrip("/") + "/whatsapp"
    signature = RequestValidator("twilio-auth-token").compute_signature(url, form)
    response = signed_client.post("/whatsapp", data=form, headers={"x-twilio-signature": signature})
    _expect_handled(response, f"whatsapp {form!r}")


HOOK_CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/vnd.shop+json",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "multipart/form-data; boundary=xyz",
        "text/plain",
        "text/plain; charset=latin-1",
        "application/xml",
        "",
    ]
)
HOOK_BODIES = st.one_of(
    JSON.map(lambda value: json.dumps(value).encode()),
    st.dictionaries(st.text(max_size=8), st.text(max_size=20), max_size=4).map(
        lambda fields: "&".join(f"{k}={v}" for k, v in fields.items()).encode()
    ),
    st.binary(max_size=200),
)
#: Header values as a server receives them: any Latin-1 text without line breaks.
HEADER_TEXT = st.text(
    st.characters(max_codepoint=255, blacklist_characters="\r\n"), min_size=0, max_size=210
)


@pytest.fixture
def hook_path(signed_client: TestClient) -> str:
    """A live hook of the fuzzing user (made after the test's database clean-up)."""
    user = {"Authorization": f"Bearer {USER_TOKEN}"}
    blueprint = {"nodes": [{"id": "start", "type": "trigger", "trigger": "webhook"}]}
    saved = signed_client.post("/workflows", json={"blueprint": blueprint}, headers=user)
    assert saved.status_code == 201, saved.text
    workflow = saved.json()
    activated = signed_client.post(f"/workflows/{workflow['id']}/activate", headers=user)
    assert activated.status_code == 200, activated.text
    path: str = workflow["hook"]["path"]
    return path


@FUZZ
@given(
    body=HOOK_BODIES,
    content_type=HOOK_CONTENT_TYPES,
    query=st.dictionaries(st.text(max_size=8), st.text(max_size=20), max_size=3),
    key=st.none() | HEADER_TEXT,
    extra=HEADER_TEXT,
)
def test_any_delivery_to_a_live_hook_is_handled(
    signed_client: TestClient,
    hook_path: str,
    body: bytes,
    content_type: str,
    query: dict[str, str],
    key: str | None,
    extra: str,
) -> None:
    """Deliveries that reach a live hook (right token), with any body, content type, query,
    Idempotency-Key and other header. Never a 5xx."""
    headers = {"content-type": content_type, "x-anything": extra.encode("latin-1")}
    if key is not None:
        headers["idempotency-key"] = key.encode("latin-1")
    response = signed_client.post(hook_path, content=body, params=query, headers=headers)
    _expect_handled(response, f"hook {content_type!r} {body!r} {query!r} {key!r}")
    assert response.status_code != 404, "the hook is live: every delivery reaches it"

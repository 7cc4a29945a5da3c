"""Who is calling, through the API: Supabase Auth access tokens (HS256 with the project's JWT
secret, RS256/ES256 from its JWKS served by a local peer), personal API keys, the deployment's
service keys, and local mode with nothing configured.

Every refused credential is a 401 ``unauthorized`` (a malformed or unauthorised ``X-User-Id``
is a 400 ``invalid_header``), and a refused request changes nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient
from pydantic import ValidationError

from blueprint_engine.app import create_app
from blueprint_engine.services import auth_service
from blueprint_engine.store.accounts import LOCAL_USER_ID
from tests.conftest import ALICE, BOB, make_settings
from tests.support import JWT_SECRET, ONE_STEP, Peer, as_user, token_for

JWKS_PATH = "/auth/v1/.well-known/jwks.json"
SERVICE_KEY = "service-key-of-the-deployment"
BLUEPRINT = ONE_STEP


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def b64url(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def claims(user: str = ALICE, **changes: Any) -> dict[str, Any]:
    """Supabase-like access token claims; a change to None leaves the claim out."""
    base: dict[str, Any] = {
        "sub": user,
        "aud": "authenticated",
        "role": "authenticated",
        "iat": int(time.time()),
        "exp": int(time.time()) + 3600,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def assert_refused(response: Any, status: int = 401, code: str = "unauthorized") -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    message: str = error["message"]
    return message


# --- HS256 tokens (SUPABASE_JWT_SECRET) -------------------------------------------------------

HS256_REFUSED: dict[str, tuple[Callable[[int], dict[str, Any]], str]] = {
    "expired": (lambda now: claims(exp=now - 120), "expired"),
    "not yet valid (nbf)": (lambda now: claims(nbf=now + 600), "not valid"),
    "issued in the future (iat)": (lambda now: claims(iat=now + 600), "not valid"),
    "for anon, not authenticated": (lambda now: claims(aud="anon"), "not for 'authenticated'"),
    "no audience": (lambda now: claims(aud=None), "not valid"),
    "no expiry": (lambda now: claims(exp=None), "not valid"),
    "no subject": (lambda now: claims(sub=None), "not valid"),
    "subject is not a user id": (lambda now: claims(sub="alice"), "subject is not a user id"),
    "subject is not a string": (lambda now: claims(sub=12345), "not valid"),
    # The local user owns every row older than accounts (and the Razorpay events).
    "subject is the local user": (
        lambda now: claims(sub="00000000-0000-0000-0000-000000000001"),
        "reserved",
    ),
    # Supabase's anon and service_role keys are JWTs signed with the same secret: no sub.
    "the project's anon key": (
        lambda now: {"iss": "supabase", "role": "anon", "iat": now, "exp": now + 3600},
        "not valid",
    ),
}


@pytest.mark.parametrize("case", sorted(HS256_REFUSED))
def test_an_invalid_hs256_token_is_refused(accounts: TestClient, case: str) -> None:
    make, reason = HS256_REFUSED[case]
    token = jwt.encode(make(int(time.time())), JWT_SECRET, algorithm="HS256")
    message = assert_refused(accounts.get("/me", headers=bearer(token)))
    assert reason in message


def test_a_valid_hs256_token_is_the_user_within_the_clock_leeway(accounts: TestClient) -> None:
    just_expired = token_for(ALICE, exp=int(time.time()) - 5)  # 30 s of clock skew allowed
    me = accounts.get("/me", headers=bearer(just_expired))
    assert me.status_code == 200, me.text
    assert me.json()["user"]["id"] == ALICE and me.json()["via"] == "token"


def test_a_token_signed_with_another_secret_or_altered_is_refused(accounts: TestClient) -> None:
    forged = token_for(ALICE, secret="someone-elses-secret-with-32-bytes-or-more")
    assert_refused(accounts.get("/me", headers=bearer(forged)))
    header, _, signature = token_for(ALICE).split(".")
    altered = f"{header}.{b64url(claims(BOB))}.{signature}"  # Alice's signature, Bob's claims
    assert_refused(accounts.get("/me", headers=bearer(altered)))
    other_alg = jwt.encode(claims(), JWT_SECRET * 2, algorithm="HS512")
    assert "'HS512'" in assert_refused(accounts.get("/me", headers=bearer(other_alg)))


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_an_unsigned_token_is_refused(accounts: TestClient, alg: str) -> None:
    """``alg: none`` (RFC 7519 §6, the "unsecured JWT"), crafted by hand: no library makes one
    for us, which is the point."""
    token = f"{b64url({'alg': alg, 'typ': 'JWT'})}.{b64url(claims())}."
    assert "not accepted" in assert_refused(accounts.get("/me", headers=bearer(token)))
    assert accounts.get("/me").status_code == 401, "and nothing fell back to local mode"


def test_malformed_authorization_is_refused(accounts: TestClient) -> None:
    for value in ("Basic YWxpY2U6c2VjcmV0", "Bearer", "Bearer    ", token_for(ALICE)):
        assert_refused(accounts.get("/me", headers={"Authorization": value}))
    for token in ("a.b.c", "not-a-token", "....."):
        assert_refused(accounts.get("/me", headers=bearer(token)))
    # An access token is a Bearer credential; as an API key it is just a wrong key.
    assert_refused(accounts.get("/me", headers={"X-API-Key": token_for(ALICE)}))


# --- Asymmetric tokens from the project's JWKS (SUPABASE_URL) ----------------------------------


class Clock:
    """Stands in for ``time`` in ``auth_service``: the JWKS cache ages only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


class Project:
    """A Supabase project as the API sees it: a JWKS endpoint on the peer (``SUPABASE_URL``
    is the peer) and the private keys behind it."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.url = peer.url
        self.issuer = f"{peer.url}/auth/v1"
        self.private: dict[str, Any] = {}
        self.published: list[dict[str, Any]] = []
        peer.handlers[JWKS_PATH] = lambda body: (200, {"keys": self.published})

    @property
    def fetches(self) -> int:
        return self.peer.hits[JWKS_PATH]

    def new_key(self, kid: str, alg: str) -> Any:
        """Make a key pair; returns the private key (not yet published)."""
        if alg == "RS256":
            key: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            public = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
        else:
            key = ec.generate_private_key(ec.SECP256R1())
            public = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
        self.private[kid] = (key, alg, {**public, "kid": kid, "alg": alg, "use": "sig"})
        return key

    def publish(self, *kids: str) -> None:
        """Serve exactly these keys' public halves from now on."""
        self.published = [self.private[kid][2] for kid in kids]

    def token(self, kid: str, user: str = ALICE, **changes: Any) -> str:
        key, alg, _ = self.private[kid]
        payload = claims(user, **{"iss": self.issuer, **changes})
        return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(auth_service, "time", fake)
    return fake


@pytest.fixture
def project(peer: Peer) -> Project:
    project = Project(peer)
    project.new_key("rsa-1", "RS256")
    project.new_key("ec-1", "ES256")
    project.publish("rsa-1", "ec-1")
    return project


@pytest.fixture
def jwks_api(database_url: str, project: Project, clock: Clock) -> Iterator[TestClient]:
    """The API with only ``SUPABASE_URL`` configured: tokens verify against the JWKS."""
    settings = make_settings(database_url, supabase_url=project.url)
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.mark.parametrize("kid", ["rsa-1", "ec-1"])
def test_rs256_and_es256_tokens_verify_against_the_jwks(
    jwks_api: TestClient, project: Project, kid: str
) -> None:
    me = jwks_api.get("/me", headers=bearer(project.token(kid)))
    assert me.status_code == 200, me.text
    assert me.json()["user"]["id"] == ALICE and me.json()["via"] == "token"
    again = jwks_api.get("/me", headers=bearer(project.token(kid, user=BOB)))
    assert again.json()["user"]["id"] == BOB
    assert project.fetches == 1, "the JWKS is cached"


def test_hs256_is_refused_when_only_the_jwks_is_configured(
    jwks_api: TestClient, project: Project
) -> None:
    """Algorithm confusion: an HS256 token "signed" with the project's public key (which anyone
    can read from the JWKS) must not verify."""
    rsa_key = project.private["rsa-1"][0]
    public_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}
    signing_input = f"{b64url(header)}.{b64url(claims(iss=project.issuer))}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    assert "'HS256'" in assert_refused(jwks_api.get("/me", headers=bearer(forged)))
    with_secret = token_for(ALICE, iss=project.issuer)  # a well-made HS256 token: no secret here
    assert_refused(jwks_api.get("/me", headers=bearer(with_secret)))


def test_a_token_whose_algorithm_is_not_its_keys_is_refused(
    jwks_api: TestClient, project: Project
) -> None:
    ec_key = project.private["ec-1"][0]
    lying = jwt.encode(
        claims(iss=project.issuer), ec_key, algorithm="ES256", headers={"kid": "rsa-1"}
    )
    assert "does not match" in assert_refused(jwks_api.get("/me", headers=bearer(lying)))


def test_a_token_signed_by_another_key_with_our_kid_is_refused(
    jwks_api: TestClient, project: Project
) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(
        claims(iss=project.issuer), stranger, algorithm="RS256", headers={"kid": "rsa-1"}
    )
    assert "InvalidSignatureError" in assert_refused(jwks_api.get("/me", headers=bearer(forged)))


def test_a_token_of_another_project_is_refused(jwks_api: TestClient, project: Project) -> None:
    other = project.token("rsa-1", iss="https://someone-else.supabase.co/auth/v1")
    assert "another project" in assert_refused(jwks_api.get("/me", headers=bearer(other)))
    no_issuer = project.token("rsa-1", iss=None)
    assert_refused(jwks_api.get("/me", headers=bearer(no_issuer)))
    expired = project.token("ec-1", exp=int(time.time()) - 120)
    assert "expired" in assert_refused(jwks_api.get("/me", headers=bearer(expired)))
    wrong_aud = project.token("ec-1", aud="anon")
    assert_refused(jwks_api.get("/me", headers=bearer(wrong_aud)))


@pytest.mark.parametrize(
    "header",
    [{"alg": "RS256", "kid": ["rsa-1"]}, {"alg": ["RS256"], "kid": "rsa-1"}, {"alg": "RS256"}],
    ids=["kid a list", "alg a list", "no kid"],
)
def test_a_hostile_token_header_is_a_401(
    jwks_api: TestClient, project: Project, header: dict[str, Any]
) -> None:
    token = f"{b64url(header)}.{b64url(claims(iss=project.issuer))}.c2ln"
    assert_refused(jwks_api.get("/me", headers=bearer(token)))


def test_jwks_rotation_and_the_refetch_limit(
    jwks_api: TestClient, project: Project, clock: Clock
) -> None:
    """A new ``kid`` makes the API fetch the JWKS again, at most once per
    ``JWKS_MIN_REFRESH_SECONDS`` however many unknown ``kid`` values arrive; a key dropped from
    the JWKS stops working after the refetch; the cache is renewed after
    ``JWKS_TTL_SECONDS`` anyway."""
    assert jwks_api.get("/me", headers=bearer(project.token("rsa-1"))).status_code == 200
    assert project.fetches == 1

    project.new_key("stray", "RS256")  # never published: a forger's kid
    for _ in range(5):
        assert_refused(jwks_api.get("/me", headers=bearer(project.token("stray"))))
    assert project.fetches == 1, "unknown kids right after a fetch fetch nothing"

    clock.now += auth_service.JWKS_MIN_REFRESH_SECONDS + 1
    for _ in range(5):
        assert_refused(jwks_api.get("/me", headers=bearer(project.token("stray"))))
    assert project.fetches == 2, "one refetch per interval, not one per request"

    project.new_key("rsa-2", "RS256")
    project.publish("rsa-2", "ec-1")  # rotated: rsa-1 is revoked, rsa-2 signs new tokens
    assert_refused(jwks_api.get("/me", headers=bearer(project.token("rsa-2"))))
    assert project.fetches == 2, "still inside the interval"
    clock.now += auth_service.JWKS_MIN_REFRESH_SECONDS + 1
    rotated = jwks_api.get("/me", headers=bearer(project.token("rsa-2")))
    assert rotated.status_code == 200, rotated.text
    assert project.fetches == 3
    assert_refused(jwks_api.get("/me", headers=bearer(project.token("rsa-1"))))
    assert jwks_api.get("/me", headers=bearer(project.token("ec-1"))).status_code == 200
    assert project.fetches == 3

    clock.now += auth_service.JWKS_TTL_SECONDS + 1
    assert jwks_api.get("/me", headers=bearer(project.token("ec-1"))).status_code == 200
    assert project.fetches == 4, "the cache expires"


def test_an_unreachable_jwks_is_a_503_not_a_sign_out(
    jwks_api: TestClient, project: Project, clock: Clock
) -> None:
    """The token may be fine; the API cannot check it yet. A 401 would tell a dashboard to sign
    the user out."""
    project.peer.script[JWKS_PATH] = [503]
    del project.peer.handlers[JWKS_PATH]
    response = jwks_api.get("/me", headers=bearer(project.token("rsa-1")))
    assert_refused(response, 503, "identity_unavailable")
    assert response.headers["retry-after"]
    project.peer.handlers[JWKS_PATH] = lambda body: (200, {"keys": project.published})
    clock.now += auth_service.JWKS_MIN_REFRESH_SECONDS + 1
    assert jwks_api.get("/me", headers=bearer(project.token("rsa-1"))).status_code == 200


@pytest.mark.parametrize(
    "body",
    [b"<html>maintenance</html>", [], {"keys": "none"}, {"keys": ["x", 1]}, {"keys": []}],
    ids=["html", "a list", "keys not a list", "keys not objects", "no keys"],
)
def test_a_broken_jwks_is_a_503_never_a_500(
    jwks_api: TestClient, project: Project, body: Any
) -> None:
    project.peer.handlers[JWKS_PATH] = lambda _: (200, body)
    response = jwks_api.get("/me", headers=bearer(project.token("rsa-1")))
    assert_refused(response, 503, "identity_unavailable")


def test_concurrent_requests_fetch_an_expired_jwks_once(
    jwks_api: TestClient, project: Project, clock: Clock
) -> None:
    """Requests queued behind the fetch use its result instead of fetching again."""
    assert jwks_api.get("/me", headers=bearer(project.token("rsa-1"))).status_code == 200

    def slow(body: Any) -> tuple[int, Any]:
        time.sleep(0.3)
        return 200, {"keys": project.published}

    project.peer.handlers[JWKS_PATH] = slow
    clock.now += auth_service.JWKS_TTL_SECONDS + 1
    token = project.token("rsa-1")
    with ThreadPoolExecutor(max_workers=6) as threads:
        statuses = list(
            threads.map(lambda _: jwks_api.get("/me", headers=bearer(token)).status_code, range(6))
        )
    print("FETCHES", project.fetches, statuses)
    assert statuses == [200] * 6
    assert project.fetches == 2


def test_the_jwks_is_not_fetched_for_refused_algorithms(
    jwks_api: TestClient, project: Project
) -> None:
    unsigned = f"{b64url({'alg': 'none', 'kid': 'x'})}.{b64url(claims())}."
    assert_refused(jwks_api.get("/me", headers=bearer(unsigned)))
    assert_refused(jwks_api.get("/me", headers=bearer(token_for(ALICE))))
    assert project.fetches == 0


@pytest.mark.parametrize(
    "url",
    [
        "http://abcd.supabase.co",
        "http://10.0.0.5:8000",
        "ftp://abcd.supabase.co",
        "abcd.supabase.co",
    ],
)
def test_supabase_url_must_be_https(database_url: str, url: str) -> None:
    """The JWKS decides who everyone is: fetched over plain HTTP, anyone on the path could
    swap in their own key and sign in as anyone."""
    with pytest.raises(ValidationError, match="SUPABASE_URL must be https"):
        make_settings(database_url, supabase_url=url)


@pytest.mark.parametrize(
    "url",
    [
        "https://abcd.supabase.co",
        "http://127.0.0.1:54321",
        "http://localhost:54321",
        "http://[::1]:54321",
    ],
)
def test_supabase_url_https_or_a_local_stack(database_url: str, url: str) -> None:
    assert make_settings(database_url, supabase_url=url).supabase_url == url


# --- Personal API keys -----------------------------------------------------------------------


def test_personal_api_keys_as_x_api_key_and_as_bearer(accounts: TestClient) -> None:
    created = accounts.post("/me/api-keys", json={"name": "ci"}, headers=as_user(ALICE))
    assert created.status_code == 201, created.text
    key, key_id = created.json()["key"], created.json()["id"]
    for headers in ({"X-API-Key": key}, bearer(key)):
        me = accounts.get("/me", headers=headers)
        assert me.status_code == 200, me.text
        assert me.json()["user"]["id"] == ALICE and me.json()["via"] == "api_key"
    [listed] = accounts.get("/me/api-keys", headers=as_user(ALICE)).json()
    assert listed["id"] == key_id and listed["last_used_at"] is not None
    assert "key" not in listed and key not in json.dumps(listed)
    assert accounts.get("/me/api-keys", headers=as_user(BOB)).json() == []

    # Bob cannot revoke (or learn about) Alice's key; she can, and it stops working at once.
    assert_refused(
        accounts.delete(f"/me/api-keys/{key_id}", headers=as_user(BOB)), 404, "not_found"
    )
    assert accounts.get("/me", headers={"X-API-Key": key}).status_code == 200
    assert accounts.delete(f"/me/api-keys/{key_id}", headers=as_user(ALICE)).status_code == 204
    for headers in ({"X-API-Key": key}, bearer(key)):
        assert "revoked or unknown" in assert_refused(accounts.get("/me", headers=headers))
    assert_refused(
        accounts.delete(f"/me/api-keys/{key_id}", headers=as_user(ALICE)), 404, "not_found"
    )
    made_up = "bpk_" + "A" * 43
    assert_refused(accounts.get("/me", headers={"X-API-Key": made_up}))


def test_a_personal_key_acts_only_for_its_owner(accounts: TestClient) -> None:
    key = accounts.post("/me/api-keys", json={"name": "n"}, headers=as_user(ALICE)).json()["key"]
    headers = {"X-API-Key": key, "X-User-Id": BOB}
    assert_refused(accounts.get("/me", headers=headers), 400, "invalid_header")
    body = {"blueprint": BLUEPRINT, "user_id": BOB}
    refused = accounts.post("/workflows", json=body, headers={"X-API-Key": key})
    assert_refused(refused, 422, "validation_error")
    assert refused.json()["error"]["details"][0]["loc"] == ["body", "user_id"]


def test_a_personal_key_cannot_make_new_credentials(accounts: TestClient) -> None:
    """A leaked script key must not outlive its revocation: it cannot mint another key, nor
    link its holder's WhatsApp number (which would then act for Alice, refunds included), nor
    change the phone her "send me" alerts go to. Only Alice, signed in, can; the key may still
    use and revoke keys."""
    created = accounts.post("/me/api-keys", json={"name": "ci"}, headers=as_user(ALICE)).json()
    for headers in ({"X-API-Key": created["key"]}, bearer(created["key"])):
        minted = accounts.post("/me/api-keys", json={"name": "mine now"}, headers=headers)
        assert_refused(minted, 403, "forbidden")
        redirected = accounts.patch("/me", json={"phone": "+14155550123"}, headers=headers)
        assert_refused(redirected, 403, "forbidden")
        linked = accounts.post(
            "/me/channels/whatsapp", json={"number": "+14155550123"}, headers=headers
        )
        assert_refused(linked, 403, "forbidden")
    me = accounts.get("/me", headers=as_user(ALICE)).json()
    assert [k["name"] for k in me["api_keys"]] == ["ci"] and me["channels"] == []
    assert me["user"]["phone"] is None
    signed_in = accounts.post(
        "/me/channels/whatsapp", json={"number": "+14155550123"}, headers=as_user(ALICE)
    )
    assert signed_in.status_code == 201, signed_in.text
    revoked = accounts.delete(
        f"/me/api-keys/{created['id']}", headers={"X-API-Key": created["key"]}
    )
    assert revoked.status_code == 204


# --- Service keys (API_KEYS) -------------------------------------------------------------------


@pytest.fixture
def service_api(database_url: str) -> Iterator[TestClient]:
    settings = make_settings(database_url, api_keys=[SERVICE_KEY], supabase_jwt_secret=JWT_SECRET)
    with TestClient(create_app(settings)) as client:
        yield client


def test_a_service_key_acts_for_the_local_user_by_default(service_api: TestClient) -> None:
    me = service_api.get("/me", headers={"X-API-Key": SERVICE_KEY}).json()
    assert me["user"]["id"] == str(LOCAL_USER_ID) and me["via"] == "service_key"
    created = service_api.post(
        "/workflows", json={"blueprint": BLUEPRINT}, headers=bearer(SERVICE_KEY)
    )
    assert created.status_code == 201 and created.json()["owner_id"] == str(LOCAL_USER_ID)


def test_a_service_key_acts_for_the_user_in_x_user_id(service_api: TestClient) -> None:
    service = {"X-API-Key": SERVICE_KEY, "X-User-Id": ALICE}
    me = service_api.get("/me", headers=service).json()
    assert me["user"]["id"] == ALICE and me["via"] == "service_key"
    created = service_api.post("/workflows", json={"blueprint": BLUEPRINT}, headers=service)
    assert created.status_code == 201 and created.json()["owner_id"] == ALICE
    workflow_id = created.json()["id"]
    assert service_api.get(f"/workflows/{workflow_id}", headers=as_user(ALICE)).status_code == 200
    assert service_api.get(f"/workflows/{workflow_id}", headers=as_user(BOB)).status_code == 404
    as_bob = {"X-API-Key": SERVICE_KEY, "X-User-Id": BOB}
    assert service_api.get(f"/workflows/{workflow_id}", headers=as_bob).status_code == 404


def test_a_service_key_acts_for_the_user_in_the_body(service_api: TestClient) -> None:
    created = service_api.post(
        "/workflows",
        json={"blueprint": BLUEPRINT, "user_id": BOB},
        headers={"X-API-Key": SERVICE_KEY},
    )
    assert created.status_code == 201, created.text
    assert created.json()["owner_id"] == BOB
    assert (
        service_api.get(f"/workflows/{created.json()['id']}", headers=as_user(BOB)).status_code
        == 200
    )
    not_a_user = service_api.post(
        "/workflows",
        json={"blueprint": BLUEPRINT, "user_id": "bob"},
        headers={"X-API-Key": SERVICE_KEY},
    )
    assert_refused(not_a_user, 422, "validation_error")


def test_x_user_id_needs_a_service_key(service_api: TestClient) -> None:
    refused = service_api.get("/me", headers={**as_user(ALICE), "X-User-Id": BOB})
    assert "only a service key" in assert_refused(refused, 400, "invalid_header")
    assert refused.json()["error"]["details"][0]["loc"] == ["header", "x-user-id"]
    malformed = service_api.get("/me", headers={"X-API-Key": SERVICE_KEY, "X-User-Id": "bob"})
    assert_refused(malformed, 400, "invalid_header")
    # A token user may name themselves in a body, but nobody else.
    own = service_api.post(
        "/workflows", json={"blueprint": BLUEPRINT, "user_id": ALICE}, headers=as_user(ALICE)
    )
    assert own.status_code == 201 and own.json()["owner_id"] == ALICE
    other = service_api.post(
        "/workflows", json={"blueprint": BLUEPRINT, "user_id": BOB}, headers=as_user(ALICE)
    )
    assert_refused(other, 422, "validation_error")


def test_a_wrong_service_key_is_refused(service_api: TestClient) -> None:
    for headers in (
        {"X-API-Key": SERVICE_KEY + "x"},
        bearer(SERVICE_KEY[:-1]),
        {"X-API-Key": "x", "X-User-Id": ALICE},
    ):
        assert_refused(service_api.get("/me", headers=headers))
    assert_refused(service_api.get("/me"))


# --- Local mode: nothing configured ----------------------------------------------------------


def test_local_mode_needs_no_credentials(client: TestClient) -> None:
    me = client.get("/me")
    assert me.status_code == 200, me.text
    assert me.json()["user"]["id"] == str(LOCAL_USER_ID) and me.json()["via"] == "local"
    created = client.post("/workflows", json={"blueprint": BLUEPRINT})
    assert created.status_code == 201 and created.json()["owner_id"] == str(LOCAL_USER_ID)
    # Development: anyone may act for anyone, as with a service key.
    assert client.get("/me", headers={"X-User-Id": ALICE}).json()["user"]["id"] == ALICE


def test_local_mode_refuses_credentials_it_cannot_check(client: TestClient) -> None:
    """Credentials that were sent are checked even when none are needed: a client that thinks
    it is someone must not silently become the local user."""
    for headers in (
        bearer(token_for(ALICE)),
        {"X-API-Key": "some-key"},
        bearer("bpk_" + "A" * 43),
        {"Authorization": "Basic YWxpY2U6c2VjcmV0"},
    ):
        assert_refused(client.get("/me", headers=headers))
    key = client.post("/me/api-keys", json={"name": "local"}).json()["key"]
    me = client.get("/me", headers={"X-API-Key": key}).json()
    assert me["user"]["id"] == str(LOCAL_USER_ID) and me["via"] == "api_key"


def test_a_public_deployment_without_identity_refuses_to_start(database_url: str) -> None:
    """An empty SUPABASE_JWT_SECRET= (an unset compose variable) means no identity: behind a
    public URL that would make anyone the local user, so the API does not start unless told
    to run open."""
    public = {"public_base_url": "https://bot.example.com", "supabase_jwt_secret": ""}
    with pytest.raises(RuntimeError, match="no identity is configured"):
        create_app(make_settings(database_url, **public))
    create_app(make_settings(database_url, **public, allow_open_access=True))
    create_app(make_settings(database_url))  # localhost: development

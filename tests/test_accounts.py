"""Accounts through the API: tokens, personal API keys, the profile, and ownership."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import ALICE, BOB
from tests.support import ONE_STEP, as_user

EXAMPLE = ONE_STEP


def test_a_token_is_needed_once_identity_is_configured(accounts: TestClient) -> None:
    response = accounts.get("/me")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    me = accounts.get("/me", headers=as_user(ALICE)).json()
    assert me["user"]["id"] == ALICE and me["via"] == "token"


def test_another_users_workflow_is_not_found(accounts: TestClient) -> None:
    created = accounts.post("/workflows", json={"blueprint": EXAMPLE}, headers=as_user(ALICE))
    assert created.status_code == 201, created.text
    workflow_id = created.json()["id"]
    assert created.json()["owner_id"] == ALICE
    assert accounts.get(f"/workflows/{workflow_id}", headers=as_user(BOB)).status_code == 404
    assert accounts.get(f"/workflows/{workflow_id}", headers=as_user(ALICE)).status_code == 200


def test_personal_api_key_lifecycle(accounts: TestClient) -> None:
    created = accounts.post("/me/api-keys", json={"name": "laptop"}, headers=as_user(ALICE))
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    assert key.startswith("bpk_") and created.json()["prefix"] == key[:12]
    me = accounts.get("/me", headers={"X-API-Key": key}).json()
    assert me["user"]["id"] == ALICE and me["via"] == "api_key"
    assert [k["name"] for k in me["api_keys"]] == ["laptop"]
    assert "key" not in me["api_keys"][0]
    key_id = created.json()["id"]
    assert accounts.delete(f"/me/api-keys/{key_id}", headers=as_user(BOB)).status_code == 404
    assert accounts.delete(f"/me/api-keys/{key_id}", headers=as_user(ALICE)).status_code == 204
    assert accounts.get("/me", headers={"X-API-Key": key}).status_code == 401


def test_profile_phone_is_normalised(accounts: TestClient) -> None:
    updated = accounts.patch(
        "/me", json={"phone": "098765 43210", "display_name": "Asha"}, headers=as_user(ALICE)
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["phone"] == "+919876543210"
    bad = accounts.patch("/me", json={"phone": "not a phone"}, headers=as_user(ALICE))
    assert bad.status_code == 422
    assert bad.json()["error"]["details"][0]["loc"] == ["body", "phone"]


def test_profile_email_is_what_email_validator_accepts(accounts: TestClient) -> None:
    updated = accounts.patch("/me", json={"email": "Asha@Example.com"}, headers=as_user(ALICE))
    assert updated.status_code == 200, updated.text
    assert updated.json()["email"] == "asha@example.com"
    for bad in ("asha..k@example.com", "asha@-bad.com", "nope"):  # the first two passed a regex
        refused = accounts.patch("/me", json={"email": bad}, headers=as_user(ALICE))
        assert refused.status_code == 422, bad
        error = refused.json()["error"]
        assert error["code"] == "validation_error", error
        assert error["details"][0]["loc"] == ["body", "email"]
        assert "doesn't look like an email address" in error["details"][0]["message"]

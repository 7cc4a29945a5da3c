"""WhatsApp voice notes are fetched only from Twilio's media hosts, with bounded size and time,
through the API (signed Twilio webhooks, real Postgres).

The peer on 127.0.0.1 plays api.twilio.com (the credential host); the made-up names
``media.cdn.test`` (Twilio's media storage) and ``elsewhere.test`` (any other host) resolve to it
through ``FakeDNS``, so every request and its headers are seen by the peer.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from blueprint_engine.app import create_app
from tests.support import FakeDNS, Peer
from tests.test_channels import TOKEN, FakeOpenAI, _settings, wav_bytes, whatsapp

SID = "ACmedia000000000000000000000000000"
BASIC = "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
SORRY = "Sorry, I couldn't download your voice note — could you send it again or type your message?"


@pytest.fixture
def llm(peer: Peer) -> FakeOpenAI:
    return FakeOpenAI(peer)


@pytest.fixture
def api(database_url: str, llm: FakeOpenAI, dns: FakeDNS) -> Iterator[TestClient]:
    dns.answers["media.cdn.test"] = [["127.0.0.1"]]
    dns.answers["elsewhere.test"] = [["127.0.0.1"]]
    settings = _settings(
        database_url,
        llm,
        tools={
            "twilio": {
                "account_sid": SID,
                "media_hosts": ["127.0.0.1", "media.cdn.test"],
                "media_auth_hosts": ["127.0.0.1"],
                "media_timeout_seconds": 1,
            }
        },
        max_audio_bytes=4000,
    )
    with TestClient(create_app(settings)) as client:
        yield client


def voice_note(client: TestClient, sid: str, url: str) -> Any:
    response = whatsapp(client, "", sid, NumMedia="1", MediaUrl0=url, MediaContentType0="audio/ogg")
    assert response.status_code == 200, response.text
    return response


def recorded(client: TestClient, database_url: str, sid: str) -> list[dict[str, Any]]:
    """The session messages from the inbound message ``sid`` on."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "select session_id, id from session_messages where provider_message_id = %s", (sid,)
        ).fetchone()
    assert row is not None, f"{sid} was not recorded"
    messages = client.get(f"/sessions/{row[0]}").json()["messages"]
    return [m for m in messages if m["id"] >= row[1]]


def redirect(location: str) -> Any:
    return lambda body: (307, b"", {"location": location})


def test_a_voice_note_on_another_host_is_refused_without_credentials(
    api: TestClient, llm: FakeOpenAI, peer: Peer, database_url: str
) -> None:
    peer.handlers["/media/note"] = lambda body: (200, b"RIFF-audio")
    response = voice_note(api, "SMelsewhere", f"http://elsewhere.test:{peer.port}/media/note")
    assert SORRY in response.text
    assert peer.hits["/media/note"] == 0, "nothing, and so no Authorization, reached that host"
    assert llm.uploads == []
    inbound, outbound = recorded(api, database_url, "SMelsewhere")
    assert inbound["direction"] == "in" and "TWILIO_MEDIA_HOSTS" in inbound["media"]["error"]
    assert outbound["direction"] == "out" and outbound["text"] == SORRY


def test_credentials_go_to_the_twilio_api_host_only(
    api: TestClient, llm: FakeOpenAI, peer: Peer
) -> None:
    audio = wav_bytes(seconds=0.05)
    peer.handlers["/media/note"] = redirect(f"http://media.cdn.test:{peer.port}/cdn/note")
    peer.handlers["/cdn/note"] = lambda body: (200, audio)
    for sid, url in [
        ("SMapi", f"{peer.url}/media/note"),  # api host -> redirect to storage
        ("SMcdn", f"http://media.cdn.test:{peer.port}/cdn/note"),  # storage directly
    ]:
        llm.transcripts.append("create an invoice")
        llm.say("CREATE_INVOICE")
        reply = voice_note(api, sid, url).text
        assert "<Message>" in reply and SORRY not in reply
    [api_hop] = peer.headers["/media/note"]
    assert api_hop.get("Authorization") == BASIC
    assert [h.get("Authorization") for h in peer.headers["/cdn/note"]] == [None, None]
    assert all(audio in upload for upload in llm.uploads) and len(llm.uploads) == 2


@pytest.mark.parametrize("where", ["elsewhere", "loop"])
def test_a_redirect_off_the_media_hosts_or_in_a_loop_is_refused(
    api: TestClient, llm: FakeOpenAI, peer: Peer, where: str
) -> None:
    peer.handlers["/stolen"] = lambda body: (200, b"RIFF-audio")
    peer.handlers["/media/note"] = redirect(
        f"http://elsewhere.test:{peer.port}/stolen" if where == "elsewhere" else "/media/note"
    )
    assert SORRY in voice_note(api, f"SM{where}", f"{peer.url}/media/note").text
    assert peer.hits["/stolen"] == 0
    assert peer.hits["/media/note"] == (1 if where == "elsewhere" else 4)
    assert llm.uploads == []


@pytest.mark.parametrize("length", ["declared", "undeclared"])
def test_an_oversize_voice_note_gets_the_clear_message(
    api: TestClient, llm: FakeOpenAI, peer: Peer, length: str
) -> None:
    """Over MAX_AUDIO_BYTES (4000 here): refused from its Content-Length, or once the streamed
    body passes the limit when no length is sent."""
    headers = {} if length == "declared" else {"content-length": None}
    peer.handlers["/media/big"] = lambda body: (200, b"\0" * 100_000, headers)
    assert SORRY in voice_note(api, f"SMbig{length}", f"{peer.url}/media/big").text
    assert llm.uploads == []


def _slow(body: Any) -> tuple[int, bytes]:
    time.sleep(2)  # past TWILIO_MEDIA_TIMEOUT_SECONDS (1 here)
    return 200, b"RIFF-audio"


@pytest.mark.parametrize(
    "answer",
    [lambda body: (404, {"message": "not found"}), lambda body: (500, b"oops"), _slow],
    ids=["404", "500", "timeout"],
)
def test_a_failed_download_gets_the_clear_message_and_is_recorded(
    api: TestClient, llm: FakeOpenAI, peer: Peer, database_url: str, answer: Any
) -> None:
    peer.handlers["/media/note"] = answer
    assert SORRY in voice_note(api, "SMfail", f"{peer.url}/media/note").text
    assert llm.uploads == []
    inbound, outbound = recorded(api, database_url, "SMfail")
    assert inbound["media"]["url"] == f"{peer.url}/media/note" and inbound["media"]["error"]
    assert outbound["text"] == SORRY

"""Voice notes and spoken replies are kept and linked from their session's messages: in a
local directory, or in Supabase Storage through the ``supabase`` client (against a local
stand-in for the Storage API, reached over real HTTP)."""

from __future__ import annotations

import base64
import email.parser
import email.policy
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from blueprint_engine.app import create_app
from blueprint_engine.store.accounts import LOCAL_USER_ID
from tests.conftest import ALICE, BOB
from tests.support import JWT_SECRET, Peer, as_user
from tests.test_channels import FakeOpenAI, _settings, wav_bytes, whatsapp

SERVICE_KEY = "service-role-key-for-tests"


class FakeStorage:
    """Supabase Storage's object API on 127.0.0.1: upload (multipart), signed URLs, listing a
    folder and removing objects, for the service role's key only. ``fail`` makes every request
    a 500."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, str]] = {}
        self.fail = False
        storage = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                if storage.fail:
                    return self._reply(500, {"statusCode": "500", "error": "x", "message": "down"})
                if self.headers.get("authorization") != f"Bearer {SERVICE_KEY}":
                    return self._reply(403, {"statusCode": "403", "error": "x", "message": "no"})
                path = self.path.split("?")[0]
                if path.startswith("/storage/v1/object/list/"):
                    bucket = path.removeprefix("/storage/v1/object/list/")
                    query = json.loads(raw)
                    folder = f"{bucket}/{query['prefix']}/"
                    names = sorted(n.removeprefix(folder) for n in storage.objects
                                   if n.startswith(folder))  # fmt: skip
                    start = query.get("offset", 0)
                    page = names[start : start + query.get("limit", 100)]
                    return self._reply(200, [{"name": n, "id": n} for n in page])
                if path.startswith("/storage/v1/object/sign/"):
                    name = path.removeprefix("/storage/v1/object/sign/")
                    if name not in storage.objects:
                        return self._reply(404, {"statusCode": "404", "error": "x", "message": "?"})
                    expires = json.loads(raw)["expiresIn"]
                    url = f"/object/sign/{name}?token=signed-{expires}"
                    return self._reply(200, {"signedURL": url})
                name = path.removeprefix("/storage/v1/object/")
                message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                    f"content-type: {self.headers['content-type']}\r\n\r\n".encode() + raw
                )
                [part] = [p for p in message.iter_parts() if p.get_filename()]
                storage.objects[name] = (part.get_payload(decode=True), part.get_content_type())
                return self._reply(200, {"Key": name, "Id": "1"})

            def do_DELETE(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                if storage.fail:
                    return self._reply(500, {"statusCode": "500", "error": "x", "message": "down"})
                if self.headers.get("authorization") != f"Bearer {SERVICE_KEY}":
                    return self._reply(403, {"statusCode": "403", "error": "x", "message": "no"})
                bucket = self.path.split("?")[0].removeprefix("/storage/v1/object/")
                removed = []
                for name in json.loads(raw)["prefixes"]:
                    if storage.objects.pop(f"{bucket}/{name}", None) is not None:
                        removed.append({"name": name})
                return self._reply(200, removed)

            def _reply(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def llm(peer: Peer) -> FakeOpenAI:
    return FakeOpenAI(peer)


@pytest.fixture
def storage() -> Iterator[FakeStorage]:
    fake = FakeStorage()
    yield fake
    fake.server.shutdown()


def _voice_turn(api: TestClient, llm: FakeOpenAI, audio: bytes, **headers: str) -> Any:
    llm.transcripts.append("what can you do")
    llm.say(None)
    response = api.post(
        "/intent-parser",
        data={"session_id": "kiosk", "reply_audio": "true"},
        files={"audio_file": ("question.wav", audio, "audio/wav")},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_a_voice_turn_keeps_both_audios_on_this_machine(
    database_url: str, llm: FakeOpenAI, tmp_path: Path
) -> None:
    audio = wav_bytes()
    settings = _settings(database_url, llm, supabase_jwt_secret=JWT_SECRET, audio_dir=tmp_path)
    with TestClient(create_app(settings)) as api:
        turn = _voice_turn(api, llm, audio, **as_user(ALICE))
        session = api.get(f"/sessions/{turn['session_id']}", headers=as_user(ALICE)).json()
        spoken_in, spoken_out = (m for m in session["messages"] if m["audio_url"])
        assert spoken_in["direction"] == "in" and spoken_in["transcript"] == "what can you do"
        assert spoken_out["direction"] == "out" and spoken_out["text"] == turn["reply"]
        base = f"/sessions/{turn['session_id']}/messages"
        assert spoken_in["audio_url"] == f"{base}/{spoken_in['id']}/audio"

        note = api.get(spoken_in["audio_url"], headers=as_user(ALICE))
        assert note.status_code == 200 and note.content == audio
        assert note.headers["content-type"] == "audio/wav"
        reply = api.get(spoken_out["audio_url"], headers=as_user(ALICE))
        assert reply.content == base64.b64decode(turn["reply_audio"]["base64"])
        assert reply.headers["content-type"] == "audio/mpeg"
        assert spoken_in["media"]["audio"]["key"].startswith(f"{ALICE}/")
        [kept] = tmp_path.glob(f"{ALICE}/*.wav")
        assert kept.read_bytes() == audio

        # Only its owner hears it; a message without audio has none to give.
        assert api.get(spoken_in["audio_url"], headers=as_user(BOB)).status_code == 404
        assert api.get(spoken_in["audio_url"]).status_code == 401
        assert api.get(f"{base}/999999/audio", headers=as_user(ALICE)).status_code == 404
        assert api.get(f"{base}/x/audio", headers=as_user(ALICE)).status_code == 422


def test_a_whatsapp_voice_note_is_kept_with_its_message(
    database_url: str, llm: FakeOpenAI, peer: Peer, tmp_path: Path
) -> None:
    audio = wav_bytes()
    peer.handlers["/media/note"] = lambda body: (200, audio)
    with TestClient(create_app(_settings(database_url, llm, audio_dir=tmp_path))) as api:
        llm.transcripts.append("what can you do")
        llm.say(None)
        response = whatsapp(
            api, "", "SMkept", NumMedia="1", MediaUrl0=f"{peer.url}/media/note",
            MediaContentType0="audio/wav",
        )  # fmt: skip
        assert response.status_code == 200
        [summary] = api.get("/sessions").json()["sessions"]
        session = api.get(f"/sessions/{summary['id']}").json()
        [note] = [m for m in session["messages"] if m["audio_url"]]
        assert note["provider_message_id"] == "SMkept"
        assert note["media"]["audio"]["key"].startswith(f"{LOCAL_USER_ID}/")
        assert api.get(note["audio_url"]).content == audio


def test_with_supabase_audio_goes_to_storage_and_is_linked_with_signed_urls(
    database_url: str, llm: FakeOpenAI, storage: FakeStorage, tmp_path: Path
) -> None:
    audio = wav_bytes()
    settings = _settings(
        database_url,
        llm,
        api_keys=["svc"],
        supabase_url=storage.url,
        supabase_service_role_key=SERVICE_KEY,
        audio_url_ttl_seconds=600,
        audio_dir=tmp_path,
    )
    with TestClient(create_app(settings)) as api:
        alice = {"X-API-Key": "svc", "X-User-Id": ALICE}
        turn = _voice_turn(api, llm, audio, **alice)
        session = api.get(f"/sessions/{turn['session_id']}", headers=alice).json()
    spoken_in, spoken_out = (m for m in session["messages"] if m["audio_url"])
    key_in = spoken_in["media"]["audio"]["key"]
    assert spoken_in["media"]["audio"]["store"] == "supabase"
    assert spoken_in["audio_url"] == (
        f"{storage.url}/storage/v1/object/sign/audio/{key_in}?token=signed-600"
    )
    assert storage.objects[f"audio/{key_in}"] == (audio, "audio/wav")
    key_out = spoken_out["media"]["audio"]["key"]
    spoken = base64.b64decode(turn["reply_audio"]["base64"])
    assert storage.objects[f"audio/{key_out}"] == (spoken, "audio/mpeg")
    assert list(tmp_path.iterdir()) == [], "nothing kept locally"


def test_a_storage_outage_loses_the_audio_but_not_the_turn(
    database_url: str, llm: FakeOpenAI, storage: FakeStorage, caplog: pytest.LogCaptureFixture
) -> None:
    storage.fail = True
    settings = _settings(
        database_url, llm, supabase_url=storage.url, supabase_service_role_key=SERVICE_KEY,
        api_keys=["svc"],
    )  # fmt: skip
    with TestClient(create_app(settings)) as api:
        turn = _voice_turn(api, llm, wav_bytes(), **{"X-API-Key": "svc"})
        session = api.get(f"/sessions/{turn['session_id']}", headers={"X-API-Key": "svc"}).json()
    assert turn["reply_audio"] is not None
    assert [m["audio_url"] for m in session["messages"]] == [None] * len(session["messages"])
    assert "audio not kept (supabase store)" in caplog.text

"""Settings from the environment and ``.env``: an empty value means unset."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from blueprint_engine.app import create_app
from blueprint_engine.config import Settings
from blueprint_engine.integrations.whatsapp import TwilioSettings


@pytest.mark.parametrize("source", ["environment", "dotenv"])
def test_an_empty_key_is_not_configured(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    """``OPENAI_API_KEY=`` (as a .env template leaves it) means no model: drafting answers 503
    ``llm_not_configured``, not a 502 connection error to a model that was never set up."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    dotenv = tmp_path / ".env"
    lines = "OPENAI_API_KEY=\nOPENAI_BASE_URL=\nTWILIO_AUTH_TOKEN=\n"
    if source == "environment":
        for line in lines.split():
            monkeypatch.setenv(line.rstrip("="), "")
        dotenv.write_text("")
    else:
        dotenv.write_text(lines)
    settings = Settings(_env_file=dotenv, database_url=database_url)  # type: ignore[call-arg]
    assert settings.openai_api_key is None
    assert settings.tool(TwilioSettings).auth_token is None
    with TestClient(create_app(settings)) as client:
        response = client.post("/workflow/draft", json={"prompt": "WhatsApp me when paid"})
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "llm_not_configured"
        whatsapp = client.post("/whatsapp", data={"MessageSid": "SM1", "From": "whatsapp:+1"})
        assert whatsapp.status_code == 503

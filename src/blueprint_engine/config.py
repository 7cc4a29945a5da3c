"""Settings: every knob has an environment variable and a default.

Read once per process with :func:`get_settings`; tests build their own :class:`Settings`.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Self, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, PrivateAttr, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings.sources import ENV_FILE_SENTINEL, DotenvType

from blueprint_engine import resources
from blueprint_engine.store import database, vault


class ToolSettings(BaseSettings):
    """Base of a tool's own settings, declared in the tool's file with its prefix::

        class TwilioSettings(ToolSettings):
            model_config = SettingsConfigDict(env_prefix="TWILIO_")
            auth_token: SecretStr | None = None   # TWILIO_AUTH_TOKEN

    Read from the environment and ``.env`` like :class:`Settings` (an empty value means unset,
    errors never quote a value), through :meth:`Settings.tool`.
    """

    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", env_ignore_empty=True, hide_input_in_errors=True
    )

    @classmethod
    def name(cls) -> str:
        """The settings' name in :attr:`Settings.tools`: the prefix in lower case, without its
        trailing underscore (``twilio``)."""
        return str(cls.model_config.get("env_prefix", "")).lower().rstrip("_")

    @classmethod
    def load(cls, env_file: DotenvType | None, given: dict[str, Any]) -> Self:
        """The settings from the environment and ``env_file``, with ``given`` over them.

        Raises:
            pydantic.ValidationError: an invalid value, or ``given`` names an unknown field.
        """
        unknown = sorted(set(given) - set(cls.model_fields))
        if unknown:
            raise ValidationError.from_exception_data(
                cls.__name__,
                [
                    {"type": "extra_forbidden", "loc": (name,), "input": given[name]}
                    for name in unknown
                ],
                hide_input=True,
            )
        return cls(_env_file=env_file, **given)

    def ready(self) -> bool:
        """True when these settings hold what a real call needs (else the tool's steps run in
        sandbox mode unless they name a connection). Default: nothing is needed."""
        return True


T = TypeVar("T", bound=ToolSettings)


class Settings(BaseSettings):
    """Process configuration, loaded from the environment (and `.env` if present).

    Durations are in seconds unless the name says otherwise.
    """

    # An empty value (``OPENAI_API_KEY=`` in a .env) means unset, not "configured as ''".
    # Errors never quote the value: it may be a key or a token.
    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", env_ignore_empty=True, hide_input_in_errors=True
    )

    database_url: str = Field(
        default="",
        description="PostgreSQL (or Supabase) connection string. Unset: the server at "
        "LOCAL_DATABASE_URL if it lets us in, else the embedded server in "
        "EMBEDDED_DATABASE_DIR; get_settings() fills it in (store/database.py decides).",
    )
    local_database_url: str = Field(
        default=database.LOCAL_DATABASE_URL,
        description="The machine's server, tried when DATABASE_URL is unset. Point it at a "
        "closed port to always use the embedded server.",
    )
    embedded_database_dir: Path = Field(
        default_factory=lambda: resources.data_dir() / "postgres",
        description="Data directory of the embedded PostgreSQL server (created on first use); "
        "its Unix socket is there too.",
    )
    db_pool_min: int = 2
    db_pool_max: int = 20
    db_acquire_timeout_seconds: float = Field(
        default=3.0,
        gt=0,
        description="Wait at most this long for a database connection; an API request that "
        "cannot get one answers 503 database_unavailable instead of hanging.",
    )
    auto_migrate: bool = Field(default=True, description="Apply pending migrations at start-up.")
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="json: one JSON object per line with request_id, run_id, node_id, trace_id "
        "where known (src/blueprint_engine/logs.py).",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # HTTP layer
    api_keys: list[SecretStr] = Field(
        default_factory=list,
        description=(
            'API_KEYS=["key1","key2"]: service keys of the deployment. A request with one acts '
            "for the user named by X-User-Id (or a body's user_id), else for the local user."
        ),
    )
    supabase_url: str | None = Field(
        default=None,
        description="https://<project>.supabase.co: accept the project's Supabase Auth access "
        "tokens, verified with the keys of its JWKS (and their issuer).",
    )
    supabase_anon_key: str | None = Field(
        default=None,
        description="The project's anon (publishable) key, public by design: with SUPABASE_URL "
        "the dashboard signs users in with Supabase Auth (GET /config/public tells it).",
    )
    allow_open_access: bool = Field(
        default=False,
        description="Run without identity although PUBLIC_BASE_URL is not localhost (every "
        "request acts as the local user). Without it such a deployment refuses to start.",
    )
    supabase_jwt_secret: SecretStr | None = Field(
        default=None,
        description="The project's JWT secret: accept HS256-signed Supabase Auth tokens. With "
        "none of SUPABASE_URL, SUPABASE_JWT_SECRET and API_KEYS set, every request acts as "
        "the local user (development).",
    )
    metrics_public: bool = Field(
        default=False,
        description="Serve GET /metrics to anyone (a scraper on a private network). Without "
        "it only service keys (API_KEYS) and local mode may read them.",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description='CORS_ORIGINS=["https://app.example.com"]: origins whose browser pages may '
        "call the API. None by default: the dashboard is served by the API itself (and Vite "
        "proxies it in development), so it is same-origin and needs no CORS.",
    )
    max_body_bytes: int = Field(default=1_048_576, description="Larger request bodies get 413.")
    hook_response_max_seconds: float = Field(
        default=30.0,
        gt=0,
        le=300,
        description="The longest a hook (POST /hooks/...) whose trigger says respond: "
        "when_finished holds the request waiting for the run's end (its response_timeout is "
        "cut to this); then it answers 202 with the run id.",
    )

    # Engine: "embedded" runs blueprints in this process on Postgres; "inngest" hands them to an
    # Inngest server (dev server or self-hosted/cloud) that calls back POST /api/inngest.
    engine: Literal["embedded", "inngest"] = "embedded"
    inngest_app_id: str = "blueprint-engine"
    inngest_dev: str | None = Field(
        default=None,
        description="INNGEST_DEV: '1' or the dev server URL -> dev mode (no signatures).",
    )
    inngest_signing_key: SecretStr | None = None
    inngest_event_key: SecretStr | None = None
    inngest_base_url: str | None = Field(
        default=None, description="INNGEST_BASE_URL: origin of a self-hosted Inngest server."
    )
    inngest_retries: int = Field(default=3, ge=0, le=20, description="Retries per step.")
    inngest_concurrency_per_user: int = Field(default=10, ge=1)

    # Embedded runner
    worker_id: str | None = Field(
        default=None,
        description=(
            "Stable id of this process (e.g. 'api-1'); must be unique among live processes. "
            "With it, a restarted process takes back its own unfinished runs at once instead of "
            "after the lease expires. Default: host:pid:random."
        ),
    )
    worker_concurrency: int = Field(default=16, ge=1, description="Runs executed at once.")
    worker_poll_seconds: float = Field(default=0.5, gt=0)
    run_lease_seconds: float = Field(
        default=30.0,
        gt=0,
        description="A crashed worker's runs are taken over after this long without heartbeat.",
    )
    run_max_pass_failures: int = Field(
        default=5,
        ge=1,
        description="Consecutive passes of a run that may end in an unexpected error (or lose "
        "their worker) without progress before the run fails with engine_error.",
    )
    run_pass_backoff_seconds: float = Field(
        default=2.0,
        ge=0,
        description="Back-off after a failed pass, doubled after each (at most an hour).",
    )
    shutdown_grace_seconds: float = 10.0
    run_worker: bool = Field(default=True, description="Start the embedded runner in the API.")
    run_scheduler: bool = Field(default=True, description="Fire schedule triggers here.")
    scheduler_poll_seconds: float = Field(default=1.0, gt=0)
    sse_watcher_buffer: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="Events an SSE client may fall behind before its stream is ended with a "
        "retry hint (it resumes from the table with Last-Event-ID).",
    )

    # Step retries (per-node `retry` overrides these)
    retry_max_attempts: int = Field(default=3, ge=1)
    retry_initial_backoff_seconds: float = Field(default=1.0, ge=0)
    retry_max_backoff_seconds: float = Field(default=30.0, ge=0)
    retry_jitter_seconds: float = Field(default=0.5, ge=0)
    foreach_max_items: int = Field(
        default=1000, ge=1, le=100_000, description="Most items one foreach node may loop over."
    )
    foreach_max_concurrency: int = Field(
        default=10, ge=1, le=100, description="Most items of one foreach running at once."
    )
    run_max_steps: int = Field(
        default=50_000,
        ge=10,
        le=10_000_000,
        description="Most steps one run may reach, loop bodies' included (loops nested in "
        "loops multiply); the step past it fails with step_budget_exceeded.",
    )
    subworkflow_max_depth: int = Field(
        default=5,
        ge=1,
        le=50,
        description="Most workflow nodes nested in a chain of child runs (a run and its "
        "children, grandchildren…); deeper fails with workflow_depth_exceeded.",
    )
    retry_after_max_seconds: float = Field(
        default=300.0,
        ge=0,
        le=86_400,
        description="Longest wait before a retry that a service's Retry-After (on a 429 or 503) "
        "can ask for; a longer one is cut to this. The wait is the larger of the backoff and "
        "the Retry-After.",
    )

    # LLM (WorkflowArchitect): any OpenAI-compatible server
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = Field(default=None, description="e.g. a local vLLM/Ollama.")
    openai_model: str = "gpt-4o"
    llm_timeout_seconds: float = Field(default=60.0, gt=0)
    llm_max_attempts: int = Field(default=3, ge=1, description="Tries on timeout/rate limit.")
    llm_backoff_seconds: float = Field(default=1.0, ge=0)
    architect_max_repairs: int = Field(default=2, ge=0, le=5)
    architect_max_prompt_chars: int = Field(default=4000, ge=1)

    # Conversational channels (WhatsApp, voice)
    public_base_url: str = Field(
        default="http://localhost:8000",
        description="The URL Twilio calls; X-Twilio-Signature is computed over it.",
    )
    default_currency: str = "INR"
    default_phone_region: str = Field(default="IN", description="For numbers without +code.")
    default_timezone: str = Field(
        default="Asia/Kolkata",
        description="IANA zone that relative dates said in a conversation ('tomorrow', "
        "'next Tuesday', '25 Dec') are resolved in.",
    )
    session_timeout_seconds: float = Field(default=1800, gt=0)
    link_code_ttl_seconds: float = Field(
        default=600, gt=0, le=86400, description="How long a WhatsApp link code works."
    )
    link_hint_interval_seconds: float = Field(
        default=3600, ge=0, description="Tell an unlinked WhatsApp sender how to link this often."
    )
    channel_reply_wait_seconds: float = Field(
        default=10, ge=0, description="Wait this long to answer inline (Twilio allows 15 s)."
    )
    transcription_model: str = "whisper-1"
    speech_model: str = "tts-1"
    speech_voice: str = "alloy"
    speech_voices: dict[str, str] = Field(
        default_factory=dict,
        description="Voice per reply language (BCP 47 tag -> voice), for a speech API that has "
        'voices for a language, e.g. {"hi": "hf_alpha"} on Kokoro; else SPEECH_VOICE, which '
        "OpenAI's voices use for every language.",
    )
    max_audio_bytes: int = 25 * 1024 * 1024
    # Voice notes and spoken replies are kept (services/audio_store.py)
    supabase_service_role_key: SecretStr | None = Field(
        default=None,
        description="The project's service role (secret) key: with SUPABASE_URL, audio is kept "
        "in Supabase Storage (AUDIO_BUCKET) instead of AUDIO_DIR. Server-side only.",
    )
    audio_bucket: str = Field(
        default="audio", description="The private Storage bucket for audio (supabase/config.toml)."
    )
    audio_dir: Path = Field(
        default_factory=lambda: resources.data_dir() / "audio",
        description="Where audio is kept without Supabase Storage.",
    )
    audio_url_ttl_seconds: int = Field(
        default=3600, ge=60, le=604_800, description="Validity of Storage's signed audio URLs."
    )

    # Credentials (connections): encrypted at rest with these keys
    credentials_key: SecretStr | None = Field(
        default=None,
        description="Fernet key(s) that encrypt stored credentials: one key, or several "
        "separated by commas (the first encrypts, all decrypt; `wf credentials rotate-key` "
        "re-encrypts with the first). Make one with `wf credentials new-key`. Without it, "
        "POST /credentials answers 503.",
    )

    # Retention: deployment defaults (a user may override them for their data and per
    # workflow, up to RETENTION_MAX_DAYS) and the pruner that applies them
    retention_succeeded_runs_days: int = Field(
        default=30,
        ge=1,
        le=36500,
        description="Keep a succeeded run this many days after it ended.",
    )
    retention_failed_runs_days: int = Field(
        default=90,
        ge=1,
        le=36500,
        description="Keep a failed or cancelled run this many days after it ended.",
    )
    retention_conversations_days: int = Field(
        default=90,
        ge=1,
        le=36500,
        description="Keep a conversation (session and messages) this many days after it closed.",
    )
    retention_max_days: int = Field(
        default=3650, ge=1, le=36500, description="The longest retention a user may ask for."
    )
    run_pruner: bool = Field(
        default=True,
        description="Prune by the retention policy in this process (when it runs the embedded "
        "runner or the scheduler).",
    )
    prune_interval_seconds: float = Field(
        default=600, gt=0, description="Seconds between pruning passes."
    )
    prune_batch_size: int = Field(
        default=500,
        ge=1,
        le=10_000,
        description="Rows a pruning batch looks at (and at most deletes), in one transaction.",
    )
    prune_batch_timeout_seconds: float = Field(
        default=10,
        gt=0,
        le=300,
        description="A pruning batch's statements give up after this long (it is retried "
        "next pass); a lock is waited for at most 1 s.",
    )
    prune_pass_seconds: float = Field(
        default=120,
        gt=0,
        description="A pruning pass stops after this long and goes on at the next interval.",
    )
    prune_batch_pause_seconds: float = Field(
        default=0.2,
        ge=0,
        le=60,
        description="Pause between pruning batches: leaves the database to the runner's "
        "steps (bench/prune_bench.py measures the trade).",
    )

    # Integrations
    sandbox: bool = Field(default=False, description="Force every tool into sandbox mode.")
    http_timeout_seconds: float = Field(
        default=30.0,
        description="Default limit of each operation of the tools' shared HTTP client (a "
        "step may set a shorter or longer one) and of a WhatsApp send.",
    )
    http_allow_hosts: list[str] = Field(
        default_factory=list,
        description=(
            "Hosts, IPs or CIDR ranges the http tool may reach even though they are private, "
            "loopback or link-local (e.g. '127.0.0.1', '10.0.0.0/8', 'internal.example')."
        ),
    )
    # Each tool's own settings (TWILIO_*, RAZORPAY_*…) are declared in its file, as a
    # ToolSettings with its prefix, and read through tool(); nothing here names a tool.
    tools: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Values that replace a tool's environment variables, by the tool settings' "
        'name (its prefix in lower case): {"twilio": {"auth_token": "…"}}. Tests set these; '
        "a deployment sets the variables.",
    )
    _env_file: DotenvType | None = PrivateAttr(default=ENV_FILE_SENTINEL)
    _tool_settings: dict[type[ToolSettings], tuple[dict[str, Any], ToolSettings]] = PrivateAttr(
        default_factory=dict
    )

    def __init__(self, _env_file: DotenvType | None = ENV_FILE_SENTINEL, **values: Any) -> None:
        """Read the environment and ``_env_file`` (default ``.env``; None: no file) as
        pydantic-settings does; each tool's settings are read from the same places."""
        super().__init__(_env_file=_env_file, **values)
        self._env_file = _env_file

    def tool(self, kind: type[T]) -> T:
        """One tool's settings (``settings.tool(TwilioSettings).auth_token``): its prefixed
        environment variables, from the same environment and ``.env`` as these settings, with
        :attr:`tools` ``[kind.name()]`` over them. Read on first use and kept.

        Raises:
            pydantic.ValidationError: a variable (or a value in :attr:`tools`) is invalid, or
                :attr:`tools` names a field the tool does not have.
        """
        given = self.tools.get(kind.name(), {})
        known = self._tool_settings.get(kind)
        if known is not None and known[0] is given:
            loaded = known[1]
        else:
            loaded = kind.load(self._env_file, given)
            self._tool_settings[kind] = (given, loaded)
        assert isinstance(loaded, kind)
        return loaded

    @field_validator("supabase_url")
    @classmethod
    def _supabase_url_is_https(cls, value: str | None) -> str | None:
        """Its JWKS decides who every caller is, so it is fetched over HTTPS only; plain HTTP
        just on a loopback host (the Supabase CLI's local stack, ``http://127.0.0.1:54321``).

        Raises:
            ValueError: any other URL (a forged key set over plain HTTP would let anyone sign
                in as anyone).
        """
        if value is None:
            return None
        parts = urlsplit(value.strip())
        host = parts.hostname or ""
        if parts.scheme == "https" and host:
            return value
        if parts.scheme == "http" and (host == "localhost" or _is_loopback(host)):
            return value
        raise ValueError(
            "SUPABASE_URL must be https://<project-ref>.supabase.co (plain http only for a "
            "local stack on localhost)"
        )

    @field_validator("credentials_key")
    @classmethod
    def _credentials_keys_parse(cls, value: SecretStr | None) -> SecretStr | None:
        """Every key must be a Fernet key, so a typo stops start-up, not the first step.

        Raises:
            ValueError: a part is not a Fernet key (the message says which, not its value).
        """
        if value is not None:
            vault.parse_keys(value.get_secret_value())
        return value

    @field_validator("embedded_database_dir")
    @classmethod
    def _absolute_dir(cls, value: Path) -> Path:
        """Absolute and without symlinks: the same directory names the same server (and
        socket) whatever the working directory."""
        return value.expanduser().resolve()

    @field_validator("default_timezone")
    @classmethod
    def _timezone_is_known(cls, value: str) -> str:
        """The zone must exist, so a typo stops start-up rather than every date slot.

        Raises:
            ValueError: not an IANA time zone name (``Asia/Kolkata``, ``UTC``).
        """
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as UTC") from None
        return value

    @property
    def inngest_dev_mode(self) -> bool:
        """True when INNGEST_DEV is set to anything but a false-like value."""
        value = (self.inngest_dev or "").strip().lower()
        return value not in ("", "0", "false", "no", "off")

    def inngest_dev_url(self) -> str | None:
        """The dev server URL when INNGEST_DEV holds one."""
        value = (self.inngest_dev or "").strip()
        return value if value.startswith(("http://", "https://")) else None


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@lru_cache
def get_settings() -> Settings:
    """Return the process-wide settings, read from the environment on first use, with the
    database chosen (:func:`blueprint_engine.store.database.choose`) when DATABASE_URL is unset."""
    return database.choose(Settings())

#!/usr/bin/env bash
# Serve the API and the dashboard on one port: builds the dashboard if its sources changed,
# then runs uvicorn (the API migrates the database as it starts, and keeps the embedded server
# up while it runs when that is the database). PORT (default 8000) and HOST (default 127.0.0.1).
source "$(dirname "$0")/lib.sh"
ensure_venv dev
ensure_database
ensure_dashboard
PORT="${PORT:-8000}"
HOST="${HOST:-127.0.0.1}"
say "dashboard and API at http://$HOST:$PORT/  (API docs: http://$HOST:$PORT/docs)"
exec "$VENV/bin/uvicorn" blueprint_engine.app:app --host "$HOST" --port "$PORT"

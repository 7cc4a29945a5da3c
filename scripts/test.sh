#!/usr/bin/env bash
# The tests: ruff, mypy (strict on backend/app), then pytest against real PostgreSQL.
# Tests use their own database: <DATABASE_URL's name>_test (created and migrated by the suite).
source "$(dirname "$0")/lib.sh"
ensure_venv dev
ensure_postgres
say "ruff"
ruff check backend tests bench evals
ruff format --check backend tests bench evals || die "ruff format: run 'ruff format backend tests bench evals'"
say "mypy --strict backend/app"
mypy
say "pytest"
exec pytest "$@"

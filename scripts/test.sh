#!/usr/bin/env bash
# The tests: ruff, mypy (strict on backend/app), the dashboard's type check, then pytest
# against real PostgreSQL (the browser tests drive the built dashboard in Chromium).
# Tests use their own database, <name>_test on the server `wf db status` names (blueprints_test
# unless DATABASE_URL names another database), created and migrated by the suite.
source "$(dirname "$0")/lib.sh"
ensure_venv dev
ensure_database
ensure_dashboard
ensure_chromium
say "ruff"
ruff check backend tests bench evals
ruff format --check backend tests bench evals || die "ruff format: run 'ruff format backend tests bench evals'"
say "mypy --strict backend/app"
mypy
say "tsc --noEmit (dashboard)"
(cd dashboard && npx --no-install tsc --noEmit) || die "the dashboard does not type-check"
say "pytest"
exec pytest "$@"

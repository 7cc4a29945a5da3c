#!/usr/bin/env bash
# The tests: ruff, mypy (strict on src/blueprint_engine), the dashboard's type check, then pytest
# against real PostgreSQL (the browser tests drive the built dashboard in Chromium).
# Tests use their own database, <name>_test on the server `wf db status` names (blueprints_test
# unless DATABASE_URL names another database), created and migrated by the suite.
source "$(dirname "$0")/lib.sh"
ensure_venv dev
ensure_database
ensure_dashboard
ensure_chromium
say "ruff"
ruff check src tests bench evals
ruff format --check src tests bench evals || die "ruff format: run 'ruff format src tests bench evals'"
say "mypy --strict src/blueprint_engine"
mypy
say "tsc --noEmit (dashboard)"
(cd dashboard && npx --no-install tsc --noEmit) || die "the dashboard does not type-check"
say "pytest"
exec pytest "$@"

#!/usr/bin/env bash
# Engine benchmark, ours vs DBOS on the same local PostgreSQL. Not part of the tests.
source "$(dirname "$0")/../scripts/lib.sh"
ensure_venv dev,bench
ensure_database
exec python bench/engine_bench.py "$@"

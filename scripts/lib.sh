# Shared by scripts/*.sh: a virtualenv with the project installed, and a reachable PostgreSQL.
# DATABASE_URL overrides the default postgresql://postgres@127.0.0.1:5432/blueprints.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VENV:-$ROOT/.venv}"
DEFAULT_DATABASE_URL="postgresql://postgres@127.0.0.1:5432/blueprints"
export DATABASE_URL="${DATABASE_URL:-$DEFAULT_DATABASE_URL}"

say() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$1" >&2; exit "${2:-1}"; }

find_python() {
    for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
           "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"; return 0
        fi
    done
    die "Python 3.11 or newer is required (set PYTHON=/path/to/python3.11)"
}

# ensure_venv EXTRAS: create .venv and (re)install when pyproject.toml changed.
ensure_venv() {
    local extras="$1"
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating virtualenv in $VENV"
        "$(find_python)" -m venv "$VENV"
        "$VENV/bin/python" -m pip install --quiet --upgrade pip
    fi
    local stamp="$VENV/.installed-$extras"
    local want
    want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        say "installing the project and its dependencies ($extras)"
        local log="$VENV/pip-install.log"
        if ! "$VENV/bin/python" -m pip install --disable-pip-version-check -e ".[$extras]" \
                >"$log" 2>&1; then
            tail -30 "$log" >&2
            die "pip install failed (full log: $log)"
        fi
        echo "$want" > "$stamp"
    fi
    export PATH="$VENV/bin:$PATH"
}

pg_reachable() {
    "$VENV/bin/python" - "$1" <<'PY' >/dev/null 2>&1
import sys, psycopg
from psycopg import conninfo
url = conninfo.make_conninfo(sys.argv[1], dbname="postgres")
psycopg.connect(url, connect_timeout=3).close()
PY
}

# ensure_postgres: find the server in DATABASE_URL, start a local cluster if it is down.
ensure_postgres() {
    if pg_reachable "$DATABASE_URL"; then return 0; fi
    # Only the default local server is ours to start; a DATABASE_URL you set is yours.
    if [ "$DATABASE_URL" = "$DEFAULT_DATABASE_URL" ] && command -v pg_ctlcluster >/dev/null 2>&1 &&
       [ -d /etc/postgresql ]; then
        local version
        version="$(ls /etc/postgresql | sort -V | tail -1)"
        say "PostgreSQL is not answering; starting local cluster $version/main"
        pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null ||
            pg_ctlcluster "$version" main start 2>/dev/null || true
        for _ in $(seq 1 30); do
            pg_reachable "$DATABASE_URL" && return 0
            sleep 1
        done
    fi
    die "cannot reach PostgreSQL for DATABASE_URL=$DATABASE_URL.
  Start a server (Debian/Ubuntu: apt-get install postgresql && pg_ctlcluster <version> main start;
  macOS: brew services start postgresql) or point DATABASE_URL at one you can reach, e.g. a
  Supabase project's connection string. The role needs CREATEDB (or create the database first)." 3
}

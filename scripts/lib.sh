# Shared by scripts/*.sh: a virtualenv with the project installed, the database it will use, the
# dashboard's build and a Chromium for its tests.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VENV:-$ROOT/.venv}"

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

# The uv that scripts use when none as recent is on PATH: installed from PyPI into .tools/uv.
UV_VERSION=0.13.9

# find_uv: print the path of a uv >= 0.13 (PATH's, else UV_VERSION installed from PyPI with pip
# into .tools/uv); print nothing when none can be had (ensure_venv then falls back to pip).
find_uv() {
    local found
    found="$(command -v uv 2>/dev/null || true)"
    if [ -n "$found" ] && "$found" --version 2>/dev/null |
            awk '{ split($2, v, "."); exit !(v[1] > 0 || v[2] >= 13) }'; then
        echo "$found"; return 0
    fi
    local tools="$ROOT/.tools/uv"
    if [ ! -x "$tools/bin/uv" ]; then
        say "no uv >= 0.13 on PATH: installing uv $UV_VERSION from PyPI into .tools/uv"
        mkdir -p "$ROOT/.tools"
        "$(find_python)" -m pip install --quiet --disable-pip-version-check --target "$tools" \
            "uv==$UV_VERSION" >"$ROOT/.tools/uv-install.log" 2>&1 || return 0
    fi
    echo "$tools/bin/uv"
}

# pip_constraints: uv.lock's versions as pip constraints (name==version), for the pip fallback.
pip_constraints() {
    "$1" - <<'PY'
import collections, tomllib
packages = tomllib.load(open("uv.lock", "rb"))["package"]
counts = collections.Counter(p["name"] for p in packages)
for p in packages:
    # The project itself is not pinned; a name locked at two versions (per Python) is left free.
    if "registry" in p.get("source", {}) and counts[p["name"]] == 1:
        print(f"{p['name']}=={p['version']}")
PY
}

# ensure_venv GROUPS: .venv with the project (editable) and the versions of uv.lock: the runtime
# dependencies and the comma-separated dependency groups of pyproject.toml (e.g. dev, or
# dev,bench). Synced with `uv sync` when pyproject.toml, uv.lock or GROUPS changed; in CI
# (CI=true) with --locked, so a lock file out of step with pyproject.toml fails the run. Where
# uv cannot be had, pip installs the same versions (uv.lock's, as constraints) and says so.
ensure_venv() {
    local groups="$1"
    local uv
    uv="$(find_uv)"
    local stamp="$VENV/.installed"
    local want
    want="$(cat pyproject.toml uv.lock | sha256sum | cut -d' ' -f1) $groups ${uv:+uv}"
    if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        export PATH="$VENV/bin:$PATH"
        return 0
    fi
    mkdir -p "$ROOT/.tools"
    local log="$ROOT/.tools/install.log"
    if [ -n "$uv" ]; then
        say "installing the project and its locked dependencies with uv (groups: $groups)"
        local args=(sync --python "$(find_python)" --no-progress)
        if [ -z "$groups" ]; then args+=(--no-dev); fi
        local group
        for group in ${groups//,/ }; do args+=(--group "$group"); done
        if [ "${CI:-}" = true ]; then args+=(--locked); fi
        if ! UV_PROJECT_ENVIRONMENT="$VENV" UV_PYTHON_DOWNLOADS=never "$uv" "${args[@]}" \
                >"$log" 2>&1; then
            tail -30 "$log" >&2
            die "uv sync failed (full log: $log)"
        fi
    else
        say "uv cannot be had here (see .tools/uv-install.log): installing with pip instead," \
            "pinned to uv.lock's versions (slower)"
        if [ ! -x "$VENV/bin/python" ]; then "$(find_python)" -m venv "$VENV"; fi
        local constraints="$VENV/constraints.txt"
        pip_constraints "$VENV/bin/python" >"$constraints"
        local args=(-e . -c "$constraints")
        local group
        for group in ${groups//,/ }; do args+=(--group "$group"); done
        # --group needs pip >= 25.1.
        if ! { "$VENV/bin/python" -m pip install --quiet --upgrade "pip>=25.1" &&
               "$VENV/bin/python" -m pip install --disable-pip-version-check "${args[@]}"; } \
                >"$log" 2>&1; then
            tail -30 "$log" >&2
            die "pip install failed (full log: $log)"
        fi
    fi
    echo "$want" > "$stamp"
    export PATH="$VENV/bin:$PATH"
}

# ensure_database: say which PostgreSQL the project's commands will use, as `wf db status`
# decides (src/blueprint_engine/store/database.py): DATABASE_URL if set, else the local server on
# 127.0.0.1:5432 if it answers, else the embedded server in .data/postgres (each command starts
# it or joins it, and the last to finish stops it). Exits 3 when DATABASE_URL's server does not
# answer: before the slower steps of test.sh and serve.sh. Needs ensure_venv first.
ensure_database() {
    "$VENV/bin/wf" db status || exit $?
}

# require_node: Node.js >= 18 and npm, or say what to install.
require_node() {
    local install="install Node.js 18 or newer with npm (Debian/Ubuntu: apt-get install nodejs npm;
  macOS: brew install node; or a release from nodejs.org)"
    command -v node >/dev/null 2>&1 || die "the dashboard needs Node.js, which is not on PATH: $install" 3
    command -v npm >/dev/null 2>&1 || die "the dashboard needs npm, which is not on PATH: $install" 3
    local major
    major="$(node -p 'process.versions.node.split(".")[0]')"
    [ "$major" -ge 18 ] || die "the dashboard needs Node.js >= 18, found $(node --version): $install" 3
}

# ensure_dashboard: build dashboard/dist when its sources, its lock file or the API's OpenAPI
# document changed since the last build: npm ci (lock file changed), API types generated from
# the app's OpenAPI document (openapi-typescript), vite build. Needs ensure_venv first.
ensure_dashboard() {
    local dir="$ROOT/dashboard"
    require_node
    local lock_stamp="$dir/node_modules/.lock-sha256"
    local lock
    lock="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
    if [ ! -f "$lock_stamp" ] || [ "$(cat "$lock_stamp")" != "$lock" ]; then
        say "installing the dashboard's packages (npm ci)"
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci failed in dashboard/"
        echo "$lock" > "$lock_stamp"
    fi
    local openapi="$dir/node_modules/.openapi.json"
    "$VENV/bin/python" -c "import json, logging; logging.disable(logging.CRITICAL)
from blueprint_engine.app import create_app
print(json.dumps(create_app().openapi(), sort_keys=True))" > "$openapi" ||
        die "could not read the API's OpenAPI document (see the error above)"
    local want
    want="$(cd "$dir" && find src public scripts index.html package.json package-lock.json \
        tsconfig.json vite.config.ts node_modules/.openapi.json -type f \
        ! -name schema.d.ts -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)"
    local stamp="$dir/dist/.build-sha256"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -f "$dir/src/api/schema.d.ts" ]; then
        return 0
    fi
    say "building the dashboard (API types, vite build)"
    (cd "$dir" && node scripts/gen-api.mjs "$openapi" >/dev/null && npx --no-install vite build \
        --logLevel warn) || die "the dashboard build failed (see above)"
    echo "$want" > "$stamp"
}

# ensure_chromium: a Chromium for the browser tests (Playwright's own or the system's). When
# none is installed, try Playwright's download, then (as root) Debian's package; if neither can
# be had, the browser tests fail and say how to get one.
ensure_chromium() {
    "$VENV/bin/python" -m tests.browser >/dev/null 2>&1 && return 0
    say "no Chromium found: trying Playwright's, then the system package"
    "$VENV/bin/python" -m playwright install chromium >/dev/null 2>&1 && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        { apt-get install -y chromium || { apt-get update && apt-get install -y chromium; }; } \
            >/dev/null 2>&1 || true
    fi
    "$VENV/bin/python" -m tests.browser >/dev/null || true  # the tests fail with the advice
}

# syntax=docker/dockerfile:1
# The API (with the embedded runner) and its dashboard, in three stages:
#   build      uv.lock's dependencies in /app/.venv, then the project's wheel built and
#              installed into it (the wheel carries the SQL migrations), and the API's OpenAPI
#              document, from which the dashboard's types are generated;
#   dashboard  npm ci and vite build, against those types;
#   runtime    Python slim with the venv and the built dashboard only, as a non-root user.
# Migrations are an explicit step, never run by the API as it starts (AUTO_MIGRATE=false):
# compose.yaml's `migrate` service runs `wf migrate` to completion before the API starts; on
# Kubernetes, the same command as an init container or a Job. Needs DATABASE_URL.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /src
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-install-project
COPY README.md ./
COPY src ./src
COPY supabase/migrations ./supabase/migrations
RUN --mount=type=cache,target=/root/.cache/uv \
    uv build --wheel --out-dir /dist \
    && uv pip install --python /app/.venv/bin/python --no-deps /dist/*.whl
# The OpenAPI document, read from the installed app (no server, no database).
WORKDIR /tmp
RUN /app/.venv/bin/python -c "import json, logging; logging.disable(logging.CRITICAL); \
from blueprint_engine.app import create_app; print(json.dumps(create_app().openapi()))" \
    > /src/openapi.json

FROM node:22-bookworm-slim AS dashboard
WORKDIR /src/dashboard
COPY dashboard/package.json dashboard/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY dashboard ./
COPY --from=build /src/openapi.json /tmp/openapi.json
RUN node scripts/gen-api.mjs /tmp/openapi.json && npx --no-install vite build

FROM ${PYTHON_IMAGE} AS runtime
RUN useradd --system --uid 10001 --user-group --home-dir /app --no-create-home app
WORKDIR /app
COPY --from=build /app/.venv /app/.venv
COPY --from=dashboard /src/dashboard/dist /app/dashboard
ENV PATH=/app/.venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    DASHBOARD_DIST=/app/dashboard AUTO_MIGRATE=false
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request as r; r.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
CMD ["uvicorn", "blueprint_engine.app:app", "--host", "0.0.0.0", "--port", "8000"]

# syntax=docker/dockerfile:1
# The churn prediction API (serve/), plus the images compose.yaml runs beside it.
#
#   docker build -t churn-api .                                    # target runtime: loads @champion
#   docker build --target tracking -t churn-mlflow .                # mlflow server (+ psycopg2, boto3)
#   docker build --target pipeline -t churn-pipeline .              # one-shot: dvc repro -> promote
#   docker build --target baked --build-arg MODEL_VERSION=4 \
#     --build-arg SOURCE_TRACKING_URI=http://mlflow.internal:5000 -t churn-api:v4 .   # air-gapped
#
# Every base is a build argument whose default is the official image. Where no registry can be
# reached, `make images` builds local stand-ins with the same interface and passes them here
# (deploy/containers.py). tests/containers builds every target and runs them with a real engine;
# `make docker-lint` runs hadolint on this file.

ARG PYTHON_IMAGE=docker.io/library/python:3.11.14-slim-bookworm
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

# ---- builder: the locked dependencies, without dev tools ------------------------------------
FROM ${PYTHON_IMAGE} AS builder
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never
# Behind a network that inspects TLS, uv needs its CA bundle: give it as the build secret
# `ca_bundle` and point uv at it (--secret id=ca_bundle,src=$SSL_CERT_FILE --build-arg
# SSL_CERT_FILE=/run/secrets/ca_bundle). A secret is mounted for one RUN, never kept in a layer.
ARG SSL_CERT_FILE=""
WORKDIR /app
# Dependencies first: this layer is rebuilt only when pyproject.toml or uv.lock change.
COPY pyproject.toml uv.lock README.md ./
RUN --mount=type=cache,target=/root/.cache/uv --mount=type=secret,id=ca_bundle \
    uv sync --frozen --no-dev --no-install-project
COPY churn/ churn/
COPY serve/ serve/
RUN --mount=type=cache,target=/root/.cache/uv --mount=type=secret,id=ca_bundle \
    uv sync --frozen --no-dev

# ---- runtime: the API, as a non-root user, no model inside (it loads @champion at start) ----
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 churn \
 && useradd --system --uid 10001 --gid churn --create-home --home-dir /home/churn churn
WORKDIR /app
COPY --from=builder /app/.venv /app/.venv
COPY churn/ churn/
COPY serve/ serve/
# MLFLOW_TRACKING_URI: the registry (compose's `mlflow` service by default). CHURN_*: see
# serve/README.md (CHURN_MODEL_URI, CHURN_RELOAD_INTERVAL, CHURN_ADMIN_TOKEN, ...).
ENV PATH="/app/.venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MLFLOW_TRACKING_URI=http://mlflow:5000 \
    CHURN_MODEL_URI=models:/churn@champion
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
# `make serve`'s command line (the Makefile's SERVE_CMD says why each flag; a test compares them).
# compose.yaml and deploy/k8s run this CMD as it is. `-e WEB_CONCURRENCY=N`: N worker processes
# (uvicorn's own variable; serve/README.md#several-worker-processes).
CMD ["uvicorn", "--factory", "serve.app:main", "--host", "0.0.0.0", "--port", "8000", \
     "--timeout-keep-alive", "75", "--http", "serve.protocol:LimitedHttpToolsProtocol"]

# ---- baked: one registered version inside the image, for hosts that cannot reach a registry --
# The build downloads models:/churn/<MODEL_VERSION> from SOURCE_TRACKING_URI into a small
# read-only SQLite registry in the image (same version number, metrics, params and tags), and
# the service pins that version: no tracking server is needed at run time. A token for the
# source server can be given as a build secret: --secret id=mlflow_token,src=token.txt (a file:
# podman's builder mounts secrets as files only).
FROM runtime AS baked
ARG MODEL_VERSION
ARG SOURCE_TRACKING_URI
USER 0:0
COPY deploy/bake.py deploy/bake.py
RUN --mount=type=secret,id=mlflow_token \
    if [ -s /run/secrets/mlflow_token ]; then \
      MLFLOW_TRACKING_TOKEN="$(cat /run/secrets/mlflow_token)"; export MLFLOW_TRACKING_TOKEN; fi \
 && python -m deploy.bake --tracking-uri "${SOURCE_TRACKING_URI}" --version "${MODEL_VERSION}" \
      --out /app/baked \
 && chown -R churn:churn /app/baked
ENV MLFLOW_TRACKING_URI=sqlite:////app/baked/mlflow.db \
    CHURN_MODEL_URI=models:/churn/${MODEL_VERSION} \
    CHURN_RELOAD_INTERVAL=0
USER 10001:10001

# ---- tracking: `mlflow server` with the team backends (PostgreSQL, S3) ------------------------
FROM builder AS tracking-builder
ARG SSL_CERT_FILE=""
RUN --mount=type=cache,target=/root/.cache/uv --mount=type=secret,id=ca_bundle \
    uv sync --frozen --no-dev --group tracking

FROM ${PYTHON_IMAGE} AS tracking
RUN groupadd --system --gid 10001 mlflow \
 && useradd --system --uid 10001 --gid mlflow --create-home --home-dir /home/mlflow mlflow \
 && mkdir -p /mlflow && chown mlflow:mlflow /mlflow
WORKDIR /app
COPY --from=tracking-builder /app/.venv /app/.venv
COPY churn/ churn/
COPY serve/ serve/
ENV PATH="/app/.venv/bin:$PATH" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
EXPOSE 5000
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=5 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=4)"]
CMD ["mlflow", "server", "--backend-store-uri", "sqlite:////mlflow/mlflow.db", \
     "--artifacts-destination", "/mlflow/artifacts", "--host", "0.0.0.0", "--port", "5000"]

# ---- pipeline: one-shot dvc repro -> train -> register -> promote into MLFLOW_TRACKING_URI ----
FROM ${PYTHON_IMAGE} AS pipeline
RUN groupadd --system --gid 10001 churn \
 && useradd --system --uid 10001 --gid churn --create-home --home-dir /home/churn churn \
 && mkdir /app && chown churn:churn /app
WORKDIR /app
COPY --from=builder /app/.venv /app/.venv
COPY --chown=churn:churn . .
ENV PATH="/app/.venv/bin:$PATH" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    MLFLOW_TRACKING_URI=http://mlflow:5000
USER 10001:10001
# No .git in the image (.dockerignore): DVC runs without an SCM; the run records commit unknown.
RUN dvc config --local core.no_scm true
CMD ["python", "-m", "churn", "pipeline"]

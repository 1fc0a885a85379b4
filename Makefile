# The only entry points the docs and the workflows use. Every target installs what it needs
# first (`setup`), so on a fresh machine `make pipeline` and `make test` are the whole set-up.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
# uv from PATH, else the one `setup` installs with pip.
UV := $(shell command -v uv 2>/dev/null || echo python3 -m uv)
HOST ?= 127.0.0.1
MLFLOW_PORT ?= 5000
PORT ?= 8000
# One command line for `make serve`, `make demo` and the tests that start the service (the
# Dockerfile's CMD is the same). --timeout-keep-alive 75: longer than the idle timeouts of the
# clients and load balancers in front of it (httpx 5 s, nginx/ALB 60 s), so the server never
# closes a connection a client is about to reuse (uvicorn's default, 5 s, races httpx's).
SERVE_CMD = $(VENV)/bin/uvicorn --factory serve.app:main --host $(HOST) --port $(PORT) \
  --timeout-keep-alive 75

.PHONY: help setup pipeline promote rollback lineage status server serve demo test test-unit lint format clean \
  data drift-ci train promote-ci actionlint docker-lint ci-lint

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: $(VENV)/.synced ## install pinned dependencies (uv.lock) into .venv
# --compile-bytecode: ~20 s once, so that no later command compiles mlflow, sklearn or pandas
# from source as it imports them. Where PYTHONDONTWRITEBYTECODE=1 is set (many CI runners and
# images) Python would otherwise do that in every process: ~5 s of each script's start here.

$(VENV)/.synced: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || { echo "setup: installing uv with pip"; \
	  python3 -m pip install --quiet uv || python3 -m pip install --quiet --user uv; }
	$(UV) sync --frozen --compile-bytecode
	@touch $@

pipeline: setup ## data -> train -> register -> promote (dvc repro + promote.py), then who is champion
	@$(PY) -m churn pipeline

.PHONY: retrain
retrain: setup ## new month: SNAPSHOT=2026-08 -> params.yaml, dvc repro -> @challenger (then make promote)
	@$(PY) -m churn retrain --snapshot "$(SNAPSHOT)"

promote: setup ## promote @challenger if it beats the gate (ARGS="--dry-run")
	@$(PY) promote.py $(ARGS)

rollback: setup ## swap @champion and @prev-champion (ARGS="--dry-run")
	@$(PY) rollback.py $(ARGS)

lineage: setup ## trace @champion to its run, commit and data (ARGS="--alias challenger")
	@$(PY) -m churn lineage $(ARGS)

status: setup ## one line: who is champion
	@$(PY) -m churn status

server: setup ## MLflow UI and tracking server on $(HOST):$(MLFLOW_PORT), over the embedded store
	$(VENV)/bin/mlflow server --backend-store-uri sqlite:///mlflow.db \
	  --artifacts-destination ./mlartifacts --host $(HOST) --port $(MLFLOW_PORT)

serve: setup ## the prediction API on $(HOST):$(PORT), serving models:/churn@champion (serve/README.md)
	$(SERVE_CMD)

demo: pipeline ## pipeline, then the API: a real /predict is sent and shown, and it keeps serving
	@$(PY) -m serve.example --host $(HOST) --port $(PORT)
	@$(SERVE_CMD) & server=$$!; \
	  trap 'kill $$server 2>/dev/null; wait $$server 2>/dev/null' EXIT INT TERM; \
	  $(PY) -m serve.example --host $(HOST) --port $(PORT) --call || exit 1; \
	  wait $$server

test: setup ## the whole suite: course, reliability, e2e, integration, unit (2 workers)
	$(PY) -m pytest -n 2 --dist loadfile --durations=15 $(ARGS)

test-unit: setup ## unit tests only (fast)
	$(PY) -m pytest tests/unit $(ARGS)

.PHONY: bench bench-score
bench: setup ## ours vs `mlflow models serve`, side by side (~5 min; ARGS="--quick"); bench/results/
	$(PY) -m bench.serve $(ARGS)

bench-score: setup ## batch scoring, Spark local[2] vs pandas, up to 1M rows (~6 min; ARGS="--quick")
	$(PY) -m bench.score $(ARGS)

lint: setup ## ruff (lint + format check) and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: setup ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean: ## remove the local MLflow store, DVC outputs and caches (keeps .venv)
	rm -rf mlflow.db mlartifacts mlruns reports data/customers.parquet .dvc/cache .dvc/tmp \
	  .pytest_cache .ruff_cache .mypy_cache

# ---- CI/CD (Days 5 and 8): the targets .github/workflows/*.yml run, in this order -----------------

data: setup ## CI: dvc pull the data, else `make train` regenerates it (dvc repro)
	@$(PY) deploy/ci.py data

drift-ci: setup ## CI: drift of this month (SNAPSHOT=, default last month) vs @champion's training data -> GITHUB_OUTPUT
	@$(PY) deploy/ci.py drift

train: setup ## dvc repro: retrain and register @challenger when data/params/code changed or the store is new
	@$(PY) deploy/ci.py train

promote-ci: setup ## promote for CI: gate refusal is green ("champion kept"); writes the GitHub job summary
	@$(PY) deploy/ci.py promote

actionlint: setup ## lint .github/workflows (actionlint)
	$(VENV)/bin/actionlint -color=false

docker-lint: setup ## hadolint the Dockerfile; docker compose config on compose.yaml (default and team)
	$(VENV)/bin/hadolint --failure-threshold info Dockerfile
	$(VENV)/bin/docker-compose -f compose.yaml config --quiet
	$(VENV)/bin/docker-compose -f compose.yaml --env-file deploy/team.env config --quiet

k8s-lint: setup ## validate deploy/k8s (base and overlays, kustomize-built) against the Kubernetes schemas
	@$(PY) -m deploy.k8s_lint

ci-lint: lint actionlint docker-lint k8s-lint ## every linter CI runs

# ---- Beyond one machine (issue 10), reliability (issue 8), the course (issue 9) ------------------

.PHONY: score test-reliability docs-test docs-images k8s-lint
score: setup ## score the prepared data with @champion on Spark local[2] -> scores/ (Parquet)
	@$(PY) -m churn score --input data/customers.parquet --output scores --master "local[2]"

test-reliability: setup ## fuzzing, limits, store outages, racing promotions, the 60 s soak (this layer alone)
	$(PY) -m pytest tests/reliability $(ARGS)

docs-test: setup ## run every runnable block in README.md and docs/ in a fresh copy; compare outputs
	$(PY) -m pytest tests/docs $(ARGS)

docs-images: setup ## re-render docs/images from a real run (plots, diagrams, MLflow UI screenshot)
	@$(PY) -m docs.images


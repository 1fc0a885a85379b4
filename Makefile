# The only entry points the docs and the workflows use. Every target installs what it needs
# first (`setup`), so on a fresh machine `make pipeline` and `make test` are the whole set-up.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
# The project's one command, `churn` (pyproject.toml [project.scripts]; `churn --help` lists its
# subcommands), run as `python -m churn` so that it is this directory's code: a second checkout
# sharing the venv (tests/docs' copies) would otherwise run the installed checkout's churn/.
CHURN := $(PY) -m churn
# uv from PATH, else the one `setup` installs with pip.
UV := $(shell command -v uv 2>/dev/null || echo python3 -m uv)
HOST ?= 127.0.0.1
MLFLOW_PORT ?= 5000
PORT ?= 8000
# One command line for `make serve`, `make demo` and the tests that start the service (the
# Dockerfile's CMD is the same; compose and Kubernetes run the image's CMD). --timeout-keep-alive
# 75: longer than the idle timeouts of the clients and load balancers in front of it (httpx 5 s,
# nginx/ALB 60 s), so the server never closes a connection a client is about to reuse (uvicorn's
# default, 5 s, races httpx's). --http serve.protocol:...: uvicorn's fast parser with a limit on
# the size and the time of a request head (CHURN_MAX_HEADER_BYTES, CHURN_HEADER_TIMEOUT_S).
# Worker processes: WEB_CONCURRENCY=N in the environment (uvicorn reads it; `WEB_CONCURRENCY=2 make
# serve`), so this line, the image's CMD and the tests' command stay one (serve/workers.py).
SERVE_CMD = $(VENV)/bin/uvicorn --factory serve.app:main --host $(HOST) --port $(PORT) \
  --timeout-keep-alive 75 --http serve.protocol:LimitedHttpToolsProtocol

.PHONY: help setup setup-dev setup-spark setup-tracking setup-docs pipeline promote rollback lineage status server serve demo test test-unit lint format clean \
  data drift-ci train decide-ci promote-ci actionlint docker-lint ci-lint

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: $(VENV)/.synced ## the runtime only (demo, pipeline, API): uv.lock's default install into .venv
setup-dev: $(VENV)/.synced-dev ## setup + test and lint tools, Spark, tracking drivers, docs site
setup-spark: $(VENV)/.synced-spark ## setup + pyspark (make score, bench-score)
setup-tracking: $(VENV)/.synced-tracking ## setup + psycopg2/boto3 (an MLflow server on PostgreSQL/S3)
setup-docs: $(VENV)/.synced-docs ## setup + MkDocs (make docs-build, docs-serve)
# One stamp per install profile. `uv sync` is exact (it removes what the profile does not list),
# so each sync deletes every stamp and touches those of the profiles the venv now satisfies: after
# `make test` (dev, a superset) `make demo` syncs nothing; after `make demo`, `make test` re-adds
# the dev tools (from the uv cache: seconds, no download).
# --compile-bytecode, for the dev profile (CI): ~20 s once, so that no later command compiles
# mlflow, sklearn or pandas from source as it imports them; where PYTHONDONTWRITEBYTECODE=1 is set
# (many CI runners) Python would otherwise do that in every process: ~5 s of each test's scripts.
# Not for the runtime profile: compiling every module of every package is 255 MB of the 955 MB a
# compiled runtime venv takes; without it Python writes the .pyc of what the demo imports, once.
define uv_sync
	@$(UV) --version >/dev/null 2>&1 || { echo "setup: installing uv with pip"; \
	  python3 -m pip install --quiet uv || python3 -m pip install --quiet --user uv; }
	@rm -f $(VENV)/.synced $(VENV)/.synced-*
	$(UV) sync --frozen --no-default-groups $(1)
	@touch $(VENV)/.synced $(foreach p,$(2),$(VENV)/.synced-$(p))
endef

$(VENV)/.synced: pyproject.toml uv.lock
	$(call uv_sync,,)
$(VENV)/.synced-dev: pyproject.toml uv.lock
	$(call uv_sync,--compile-bytecode --group dev,dev spark tracking docs)
$(VENV)/.synced-spark: pyproject.toml uv.lock
	$(call uv_sync,--group spark,spark)
$(VENV)/.synced-tracking: pyproject.toml uv.lock
	$(call uv_sync,--group tracking,tracking)
$(VENV)/.synced-docs: pyproject.toml uv.lock
	$(call uv_sync,--group docs,docs)

pipeline: setup ## data -> train -> register -> promote (dvc repro + promote.py), then who is champion
	@$(CHURN) pipeline

.PHONY: retrain
retrain: setup ## new month: SNAPSHOT=2026-08 -> params.yaml, dvc repro -> @challenger (then make promote)
	@$(CHURN) retrain --snapshot "$(SNAPSHOT)"

promote: setup ## promote @challenger if it beats the gate (ARGS="--dry-run")
	@$(CHURN) promote $(ARGS)

rollback: setup ## swap @champion and @prev-champion (ARGS="--dry-run")
	@$(CHURN) rollback $(ARGS)

lineage: setup ## trace @champion to its run, commit and data (ARGS="--alias challenger")
	@$(CHURN) lineage $(ARGS)

status: setup ## one line: who is champion
	@$(CHURN) status

server: setup-tracking ## MLflow UI and tracking server on $(HOST):$(MLFLOW_PORT), over the embedded store
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

# Under CI=true the engines the suite needs are installed first (deploy/system-deps.sh), so their
# tests fail instead of skipping; locally those tests skip and name the package.
test: setup-dev $(if $(filter true 1,$(CI)),system-deps) ci-lint docs-build ## linters, docs site, then the whole suite (2 workers)
	$(PY) -m pytest -n 2 --dist loadfile --durations=15 $(ARGS)

test-unit: setup-dev ## unit tests only (fast)
	$(PY) -m pytest tests/unit $(ARGS)

.PHONY: bench bench-peers bench-score bench-live-eval setup-bench
# The benchmarks install nothing: `make setup-bench` does, once (as root, or with sudo).
WRK_CHECK = @command -v wrk >/dev/null || { echo "bench: wrk is not installed: run \`make setup-bench\` first" >&2; exit 1; }
setup-bench: setup-dev ## wrk, the load generator of bench and bench-peers (apt-get install wrk)
	@command -v wrk >/dev/null || { $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -qq wrk; }
	@wrk -v 2>&1 | head -1

bench: setup-dev ## ours vs `mlflow models serve` and the floor, 1 vs 2 workers, the prediction log on vs off (~8 min; ARGS="--quick"); bench/results/
	$(WRK_CHECK)
	$(PY) -m bench.serve $(ARGS)

bench-peers: setup-dev ## ours vs MLServer, BentoML, LitServe, mlflow serve, each in bench/peers/<name>/.venv (ARGS="--quick")
	$(WRK_CHECK)
	$(PY) -m bench.peers $(ARGS)

bench-score: setup-spark ## batch scoring, Spark local[2] vs pandas, up to 1M rows (~6 min; ARGS="--quick")
	$(PY) -m bench.score $(ARGS)

bench-live-eval: setup-dev ## `churn live-eval` on a 1,000,000-row prediction log: under a minute? (ARGS="--quick")
	$(PY) -m bench.live_eval $(ARGS)

lint: setup-dev ## ruff (lint + format check) and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: setup-dev ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean: ## remove the local MLflow store, DVC outputs and caches (keeps .venv)
	rm -rf mlflow.db mlartifacts mlruns reports data/customers.parquet .dvc/cache .dvc/tmp \
	  .pytest_cache .ruff_cache .mypy_cache

# ---- CI/CD (Days 5 and 8): the targets .github/workflows/*.yml run, in this order -----------------

data: setup ## CI: dvc pull the data, else `make train` regenerates it (dvc repro)
	@$(PY) -m deploy.ci data

drift-ci: setup ## CI: drift of this month (SNAPSHOT=, default last month) vs @champion's training data -> GITHUB_OUTPUT
	@$(PY) -m deploy.ci drift

train: setup ## dvc repro: retrain and register @challenger when data/params/code changed or the store is new
	@$(PY) -m deploy.ci train

decide-ci: setup ## CI: the gate as a dry run -> GITHUB_OUTPUT decision=promote|keep|nothing; interval in the summary
	@$(PY) -m deploy.ci decide

promote-ci: setup ## promote for CI: refuses (exit 3) if the aliases moved since decide-ci; gate refusal is green
	@$(PY) -m deploy.ci promote

actionlint: setup-dev ## lint .github/workflows (actionlint)
	$(VENV)/bin/actionlint -color=false

.PHONY: base-images images test-containers
base-images: setup ## the Dockerfile's bases: pulled, else local stand-ins (Debian + PyPI; root for debootstrap)
	@$(PY) -m deploy.containers base-images

images: setup ## build every image compose.yaml names, with docker if its daemon answers, else podman
	@$(PY) -m deploy.containers images

test-containers: setup-dev $(if $(filter true 1,$(CI)),system-deps-containers) ## build the images, run them and the compose stack (tests/containers)
	$(PY) -m pytest tests/containers --durations=15 $(ARGS)

docker-lint: setup-dev ## hadolint the Dockerfile; docker compose config on compose.yaml (default and team)
	$(VENV)/bin/hadolint --failure-threshold info Dockerfile
	$(VENV)/bin/docker-compose -f compose.yaml config --quiet
	$(VENV)/bin/docker-compose -f compose.yaml --env-file deploy/team.env config --quiet

k8s-lint: setup-dev ## validate deploy/k8s (base and overlays, kustomize-built) against the Kubernetes schemas
	@$(PY) -m deploy.k8s_lint

ci-lint: lint actionlint docker-lint k8s-lint ## every linter CI runs

.PHONY: system-deps system-deps-containers
system-deps: ## the Debian packages the engine tests need (PostgreSQL, Chromium), when missing
	@deploy/system-deps.sh
system-deps-containers: ## those, plus podman, runc and debootstrap for make test-containers
	@deploy/system-deps.sh containers

# ---- Beyond one machine (issue 10), reliability (issue 8), the course (issue 9) ------------------

.PHONY: score test-reliability docs-test docs-images k8s-lint
score: setup-spark ## score the prepared data with @champion on Spark local[2] -> scores/ (Parquet)
	@$(CHURN) score --input data/customers.parquet --output scores --master "local[2]"

test-reliability: setup-dev ## this layer alone, with every fault at every registry write (make test: a sample; ~40 min)
	CRASH_SAFETY=full $(PY) -m pytest tests/reliability $(ARGS)

docs-test: setup-dev ## run every runnable block in README.md and docs/ in a fresh copy; compare outputs
	$(PY) -m pytest tests/docs $(ARGS)

.PHONY: docs-build docs-serve
docs-build: setup-docs ## the course as a static site in site/ (MkDocs, strict: a broken link or image fails)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict $(ARGS)

docs-serve: setup-docs ## the course as a website on http://$(HOST):8001, rebuilt as pages change
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve --dev-addr $(HOST):8001

docs-images: setup-dev ## re-render docs/images from a real run (plots, diagrams, MLflow UI screenshot)
	@$(PY) -m docs.images

# ---- The exercises (exercises/README.md) -----------------------------------------------------------

.PHONY: check
check: setup ## check your exercise: DAY=4 (exercises/day04/); SOLUTION=1 checks the reference instead
	@$(PY) -m exercises.check "$(DAY)" $(if $(filter-out 0,$(SOLUTION)),--solution)


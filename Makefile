# content-tagger: the README's two commands are `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MODEL := artifacts/model/model.json

.PHONY: help install model fixture-model demo demo-stop test test-unit test-integration lint bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## Create or update .venv with the package and its dev tools

$(MODEL): $(STAMP) data/dataset.csv $(wildcard model_export/*.py)
	$(PY) -m model_export --out artifacts/model

model: $(MODEL) ## Train, evaluate and export the ONNX model if it is missing or stale

fixture-model: $(STAMP) ## Export the small model the tests serve (tests/fixtures/model) again
	$(PY) -m model_export --data data/dataset.csv --out tests/fixtures/model --fast

demo: $(MODEL) ## Run the service end to end on the sample data (starts Kafka and the worker)
	scripts/demo

demo-stop: ## Stop the demo's worker, and Kafka if the demo started it
	scripts/demo stop

test: $(STAMP) ## Run the whole test suite in two processes (starts and stops Kafka, Prometheus and MLflow itself)
	$(VENV)/bin/pytest -n 2 --dist loadfile

test-unit: $(STAMP) ## Run the fast tests that need no broker (make test runs the slow ones too)
	$(VENV)/bin/pytest tests/unit -m 'not kafka and not prometheus and not browser and not slow'

test-integration: $(STAMP) ## Run the tests against a real broker
	$(VENV)/bin/pytest tests/integration

lint: $(STAMP) ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

BENCH_RSS_EVENTS ?= 1000000

bench: $(MODEL) ## Run the benchmarks (classifier, training over many splits, dedupe state, stream, index replication, worker memory, profile) into BENCHMARKS.md
	$(PY) -m bench.classifier
	$(PY) -m bench.splits
	$(PY) -m bench.dedupe_state
	export TAGGER_KAFKA_BOOTSTRAP_SERVERS="$${TAGGER_KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:$${KAFKA_PORT:-9092}}"; \
	if scripts/kafka status >/dev/null 2>&1; then started=; else started=1; scripts/kafka start; fi; \
	trap '[ -z "$$started" ] || scripts/kafka stop' EXIT; \
	$(PY) -m bench.stream && $(PY) -m bench.replication && $(PY) -m bench.stream --rss-events $(BENCH_RSS_EVENTS) && $(PY) -m bench.profile

clean: ## Stop what the scripts started; delete .venv, caches, artifacts (models; promoted candidates in artifacts/candidates/promoted) and .run (broker and registry data; reviewers' decisions in .run/labels/labels.jsonl, accounts in .run/reviewers, the review session secret in .run/worker/review-session-secret)
	-scripts/demo stop
	-scripts/prometheus stop
	-scripts/kafka stop
	-scripts/mlflow stop
	rm -rf $(VENV) .cache .run artifacts .pytest_cache .mypy_cache .ruff_cache

# Everything runs from the project's own virtualenv, built from the pinned lock file.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint bench airflow-ui clean

venv: $(STAMP)

$(STAMP): requirements-lock.txt requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==25.3
	$(PY) -m pip install --quiet --no-deps -r requirements-lock.txt
	$(PY) -m pip check
	touch $(STAMP)

## The main job: the fal_video_batch DAG on the sample prompts, against the local emulator.
demo: venv
	$(PY) include/scripts/run_demo.py

## Every test, then the linter. This is what .ci/run calls.
test: venv
	bash include/scripts/ensure_browser.sh
	$(PY) -m pytest -q -p no:cacheprovider
	$(VENV)/bin/ruff check .

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

## The full local Airflow (standalone: scheduler, triggerer, API server + UI) plus the emulator.
airflow-ui: venv
	$(PY) include/scripts/run_standalone.py

## Benchmarks print figures; they are not tests.
bench: venv
	$(PY) benchmarks/run_all.py

clean:
	rm -rf .airflow archive build artifacts

## Airflow's distributed stack natively (CeleryExecutor, Postgres 127.0.0.1:5432, Redis 127.0.0.1:6379):
## scheduler, dag-processor, triggerer, api-server and two Celery workers. STACK names it (.airflow/stack-$(STACK)/).
## The fal connection comes from AIRFLOW_CONN_FAL_DEFAULT in your environment. See "Running at scale" in README.md.
STACK ?= default
.PHONY: stack-up stack-down stack-status stack-test

stack-up: venv
	cd include && ../$(PY) -m stack start --name $(STACK)

stack-down:
	cd include && ../$(PY) -m stack stop --name $(STACK)

stack-status:
	cd include && ../$(PY) -m stack status --name $(STACK)

## The compose-structure test and the tests that start the real stack: the smoke test (~1 min) and the
## end-to-end module (~5 min on 2 cores: 100 prompts with a triggerer restart and a task marked failed, backfill).
## Each module starts its own stack on a fresh database and stops it (no process left). `make test` runs them too.
stack-test: venv
	$(PY) -m pytest -q -p no:cacheprovider tests/stack

## Chaos run: the DAG over 200 rows with seeded random fal faults, then the invariant check (non-zero exit if broken).
.PHONY: chaos
chaos: venv
	$(PY) include/scripts/chaos_run.py

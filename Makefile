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

## Benchmarks print figures; they are not tests.
bench: venv
	$(PY) benchmarks/run_all.py

clean:
	rm -rf .airflow archive build artifacts

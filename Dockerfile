# The project's Airflow image: the official image plus the exact, tested resolution of requirements-lock.txt.
# Used by docker-compose.yaml (`docker compose build`). The Airflow version here, in requirements.txt and in
# docker-compose.yaml must agree: tests/stack/test_compose.py checks it.
FROM apache/airflow:3.3.2-python3.11

COPY requirements-lock.txt /tmp/requirements-lock.txt
# --no-deps: install exactly the locked versions (as `make venv` does); the lock pins apache-airflow itself.
RUN pip install --no-cache-dir --no-deps -r /tmp/requirements-lock.txt \
    && pip check || echo "WARNING: pip check reports conflicts with providers bundled in the base image"

"""Airflow's distributed stack (CeleryExecutor, Postgres, Redis) for this project: native processes and tests.

    cd include && ../.venv/bin/python -m stack start|stop|status|wait|restart triggerer [--name NAME]

`stack.harness.AirflowStack` is the context manager tests use.
"""

from .native import NativeStack, StackError

__all__ = ["AirflowStack", "NativeStack", "StackError"]


def __getattr__(name):  # the harness imports requests; keep `python -m stack stop` light
    if name == "AirflowStack":
        from .harness import AirflowStack

        return AirflowStack
    raise AttributeError(name)

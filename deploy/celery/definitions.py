# deploy/celery/definitions.py
"""The steps of each run go to Celery workers through the broker; every worker needs the same
environment (L2SYNC_STATE_URL, the secrets), and nothing is kept on a worker's disk."""

from pathlib import Path

from dagster_celery import celery_executor

from l2sync_dagster.orchestration.definitions import build_definitions

defs = build_definitions(
    Path(__file__).resolve().parents[2] / "connections",
    executor=celery_executor.configured({
        "broker": {"env": "CELERY_BROKER_URL"},  # amqp://... or redis://...
        "backend": {"env": "CELERY_BACKEND_URL"},
    }),
)

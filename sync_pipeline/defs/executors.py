"""Where steps run: in the run's own process (default), or on Celery workers.

Set SYNC_PIPELINE_CELERY_BROKER (e.g. redis://127.0.0.1:6379/0) in the environment of the
daemon, the webserver and the workers, and the same jobs fan their steps out to Celery
workers started with `dagster-celery worker start -A dagster_celery.app -y celery.yaml`.
"""

import os

import dagster as dg


def default_executor() -> dg.ExecutorDefinition:
    broker = os.environ.get("SYNC_PIPELINE_CELERY_BROKER")
    if not broker:
        return dg.in_process_executor
    from dagster_celery import celery_executor

    backend = os.environ.get("SYNC_PIPELINE_CELERY_BACKEND", broker)
    return celery_executor.configured({"broker": broker, "backend": backend}, name="celery")

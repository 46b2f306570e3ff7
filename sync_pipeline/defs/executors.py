"""Where steps run: in the run's own process (default), or on Celery workers.

Set SYNC_PIPELINE_CELERY_BROKER (e.g. redis://127.0.0.1:6379/0) in the environment of the
daemon, the webserver and the workers, and the same jobs fan their steps out to Celery
workers started with `dagster-celery worker start -A dagster_celery.app -y celery.yaml`.
"""

import dagster as dg

from sync_pipeline.core import config


def default_executor() -> dg.ExecutorDefinition:
    broker = config.celery_broker()
    if not broker:
        return dg.in_process_executor
    from dagster_celery import celery_executor

    backend = config.celery_backend(broker)
    return celery_executor.configured({"broker": broker, "backend": backend}, name="celery")

"""A tenant's partition materialised through Dagster, in process, as the tests run syncs."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import dagster as dg

from sync_pipeline.definitions import defs
from sync_pipeline.defs.partitions import TENANT_PARTITIONS
from sync_pipeline.defs.resources import Database, Graph


def materialise(
    instance: dg.DagsterInstance,
    tenant: str,
    *,
    job: str = "sync",
    assets: Sequence[Any] | None = None,
    selection: Any = None,
    database_url: str | None = None,
    resources: dict[str, Any] | None = None,
    **kw: Any,
) -> dg.ExecuteInProcessResult:
    """Run tenant `tenant`'s partition in `instance`, adding the partition when missing.

    Runs the definitions' job `job`, or, given `assets`, materialises those (`selection` of
    them). Resources: `resources` when given; else, with `database_url`, the database
    resource on that URL and the Graph resource's defaults; else the definitions' own (they
    read DATABASE_URL). Other keywords (`raise_on_error`, `tags`) go to Dagster as they are.
    """
    if tenant not in instance.get_dynamic_partitions(TENANT_PARTITIONS):
        instance.add_dynamic_partitions(TENANT_PARTITIONS, [tenant])
    if resources is None and database_url is not None:
        resources = {"database": Database(url=database_url), "graph": Graph()}
    if assets is not None:
        return dg.materialize(
            assets,
            selection=selection,
            partition_key=tenant,
            instance=instance,
            resources=resources,
            **kw,
        )
    return defs.resolve_job_def(job).execute_in_process(
        partition_key=tenant, instance=instance, resources=resources, **kw
    )


def instance() -> Iterator[dg.DagsterInstance]:
    """A throwaway Dagster instance for one test's runs (a fixture's body)."""
    with dg.instance_for_test() as inst:
        yield inst


def evaluations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    """The run's asset check evaluations by check name."""
    return {e.check_name: e for e in result.get_asset_check_evaluations()}

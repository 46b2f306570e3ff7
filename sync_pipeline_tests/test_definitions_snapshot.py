"""The code location's shape, snapshotted: a refactor of defs/ must leave it as it is.

The snapshot names the assets (group, partitions, deps, kinds, pools, retry policy), the asset
checks (asset, name, blocking), the jobs (selected assets and checks, hooks), the schedules
and the sensors. It lives in `sync_pipeline_tests/snapshots/definitions.txt`, committed; this
test only reads it. After an intended change to the asset graph, refresh it with

    SYNC_PIPELINE_UPDATE_SNAPSHOTS=1 pytest sync_pipeline_tests/test_definitions_snapshot.py

and commit the new file with the change, so the diff shows what moved.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from sync_pipeline.definitions import defs

SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.txt"
UPDATE_ENV = "SYNC_PIPELINE_UPDATE_SNAPSHOTS"


def _key(key: dg.AssetKey) -> str:
    return key.to_user_string()


def _keys(keys) -> str:
    return ", ".join(sorted(_key(k) for k in keys)) or "-"


def _check(key: dg.AssetCheckKey) -> str:
    return f"{_key(key.asset_key)}:{key.name}"


def _partitions(partitions_def: dg.PartitionsDefinition | None) -> str:
    if partitions_def is None:
        return "-"
    name = getattr(partitions_def, "name", None)
    return f"{type(partitions_def).__name__}({name})"


def _retry(policy: dg.RetryPolicy | None) -> str:
    if policy is None:
        return "-"
    backoff = policy.backoff.value if policy.backoff else "-"
    jitter = policy.jitter.value if policy.jitter else "-"
    return f"max_retries={policy.max_retries} delay={policy.delay} {backoff} {jitter}"


def render(definitions: dg.Definitions) -> str:
    """The definitions as sorted text, one line per fact a refactor must keep."""
    repo = definitions.get_repository_def()
    graph = repo.asset_graph
    lines = ["# assets: key | group | partitions | deps | kinds | pools | retry"]
    for key in sorted(graph.get_all_asset_keys()):
        node = graph.get(key)
        retry = node.assets_def.op.retry_policy if node.is_executable else None
        lines.append(
            " | ".join(
                [
                    _key(key),
                    node.group_name or "-",
                    _partitions(node.partitions_def),
                    _keys(node.parent_keys),
                    ", ".join(sorted(node.kinds)) or "-",
                    ", ".join(sorted(node.pools or ())) or "-",
                    _retry(retry),
                ]
            )
        )
    lines.append("")
    lines.append("# asset checks: asset:name | blocking")
    specs = {spec.key: spec for assets_def in graph.assets_defs for spec in assets_def.check_specs}
    lines.extend(
        f"{_check(key)} | blocking={specs[key].blocking}"
        for key in sorted(graph.asset_check_keys, key=_check)
    )
    lines.append("")
    lines.append("# jobs: name | partitions | hooks | assets | checks")
    for job in sorted(repo.get_all_jobs(), key=lambda j: j.name):
        if job.name.startswith("__"):  # Dagster's implicit asset job
            continue
        layer = job.asset_layer
        checks = ", ".join(sorted(_check(k) for k in layer.asset_graph.asset_check_keys)) or "-"
        hooks = ", ".join(sorted(h.name for h in job.hook_defs)) or "-"
        lines.append(
            " | ".join(
                [
                    job.name,
                    _partitions(job.partitions_def),
                    hooks,
                    _keys(layer.executable_asset_keys),
                    checks,
                ]
            )
        )
    lines.append("")
    lines.append("# schedules: name | cron | timezone | job | default status | resources")
    lines.extend(
        " | ".join(
            [
                schedule.name,
                str(schedule.cron_schedule),
                schedule.execution_timezone or "-",
                schedule.job_name or "-",
                schedule.default_status.value,
                ", ".join(sorted(schedule.required_resource_keys)) or "-",
            ]
        )
        for schedule in sorted(repo.schedule_defs, key=lambda s: s.name)
    )
    lines.append("")
    lines.append("# sensors: name | type | interval | default status | resources | monitored")
    for sensor in sorted(repo.sensor_defs, key=lambda s: s.name):
        monitored = "-"
        if isinstance(sensor, dg.RunStatusSensorDefinition):
            jobs = getattr(sensor, "_monitored_jobs", None) or []
            monitored = ", ".join(sorted(getattr(j, "name", str(j)) for j in jobs)) or "-"
        lines.append(
            " | ".join(
                [
                    sensor.name,
                    type(sensor).__name__,
                    str(sensor.minimum_interval_seconds),
                    sensor.default_status.value,
                    ", ".join(sorted(sensor.required_resource_keys)) or "-",
                    monitored,
                ]
            )
        )
    return "\n".join(lines) + "\n"


def test_definitions_match_the_snapshot() -> None:
    current = render(defs)
    if os.environ.get(UPDATE_ENV) == "1":
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(current)
    assert SNAPSHOT.exists(), f"no snapshot yet: run with {UPDATE_ENV}=1 and commit it"
    expected = SNAPSHOT.read_text()
    assert current == expected, (
        f"the definitions changed; if that is intended, rerun with {UPDATE_ENV}=1 and commit "
        f"{SNAPSHOT.name}"
    )

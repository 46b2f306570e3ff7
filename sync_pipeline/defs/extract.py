"""Extract: Graph → staging.*, one tenant partition at a time, in one transaction.

One multi-asset reads every entity concurrently (users, groups, memberships, SKUs and
managers share Graph's resource-unit budget, so one read plans them best) and materialises
the five staging assets together: a failed or partial read rolls back, the delta links stay
where they were, and the downstream transform and load do not run. The run tag
`sync_pipeline/full_read=true` (`sync-pipeline sync TENANT --full`, and the schedule's
periodic full read) ignores the delta links.
"""

import datetime as dt
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import dagster as dg
from pydantic import Field

from sync_pipeline.core import db
from sync_pipeline.core.settings import TenantSettings
from sync_pipeline.defs import liveness, metadata
from sync_pipeline.defs.partitions import tenant_partitions
from sync_pipeline.defs.resources import Database, Graph
from sync_pipeline.defs.stopping import stop_checker, stop_if_asked, test_pause
from sync_pipeline.extract.extraction import extract
from sync_pipeline.extract.person import PersonNotFound, PersonRead, read_person
from sync_pipeline.extract.staging import COLUMNS, GraphDataError
from sync_pipeline.graph import CredentialError, GraphAuthError, GraphClient, GraphError, health
from sync_pipeline.graph.health import MissingPermission
from sync_pipeline.registry import runlimits, staleness

FULL_READ_TAG = "sync_pipeline/full_read"
TENANT_BUSY = "tenant_busy"  # the failure code of a run that found an earlier one going
PERSON_TAG = "sync_pipeline/person"  # a run of one person: whom (the UI's run list shows it)
GRAPH_RETRY = dg.RetryPolicy(
    max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
SPECS = {
    "graph_users": "Every user of the tenant's directory (every property the product needs, "
    "docs/extraction.md), with licence assignments, in staging.users and staging.user_licences.",
    "graph_groups": "Every group with its type fields (groupTypes, mailEnabled, "
    "securityEnabled), in staging.groups.",
    "graph_group_members": "Direct members of every group (users, nested groups and other "
    "directory objects, each with its type), in staging.group_members.",
    "graph_subscribed_skus": "The tenant's licence products (SKUs) with consumed and enabled "
    "units, in staging.subscribed_skus.",
    "graph_user_managers": "Each user's manager (none is a valid answer), in "
    "staging.user_managers.",
}
TABLES = {
    "graph_users": ("users", "user_licences"),
    "graph_groups": ("groups",),
    "graph_group_members": ("group_members",),
    "graph_subscribed_skus": ("subscribed_skus",),
    "graph_user_managers": ("user_managers",),
}


@contextmanager
def graph_failures() -> Iterator[None]:
    """Errors no retry can fix (sign-in, permissions, bad data) fail the run at once."""
    try:
        yield
    except GraphAuthError as exc:
        raise dg.Failure(str(exc), allow_retries=False, metadata={"code": exc.code}) from None
    except GraphError as exc:
        if exc.status in (400, 401, 403, 404):
            raise dg.Failure(
                str(exc),
                allow_retries=False,
                metadata={"code": exc.code, "request_id": exc.request_id or ""},
            ) from None
        raise
    except MissingPermission as exc:
        raise dg.Failure(
            str(exc), allow_retries=False, metadata={"code": "missing_permission"}
        ) from None
    except (GraphDataError, CredentialError) as exc:
        raise dg.Failure(str(exc), allow_retries=False) from None
    except PersonNotFound as exc:
        raise dg.Failure(
            str(exc), allow_retries=False, metadata={"code": "person_not_found"}
        ) from None


class ExtractConfig(dg.Config):
    user: str = Field(
        default="",
        description="Sync only this person now (UPN, mail address or Graph id): their row, "
        "manager and direct groups are read from Graph and applied by the tenant's rules; "
        "nobody else changes and the delta links stay where they are. Empty: the whole tenant.",
    )


def unreadable_lines(groups: dict[str, dict[str, object]]) -> list[str]:
    """The groups whose members Graph refused, each with the permission to grant."""
    return [
        f"members of group {str(g.get('name') or gid)!r} ({gid}) could not be read: grant "
        f"{g.get('permission')}; memberships kept as last read"
        for gid, g in sorted(groups.items(), key=lambda kv: (str(kv[1].get("name")), kv[0]))
    ]


def purpose_metadata(counts: Counter[str], types: Sequence[str]) -> metadata.Metadata:
    """The mailbox types read (exclude_mailbox_types): userPurpose requests made, answers
    read, unreadable ones (404: no mailbox; those people stay in the sync), and people skipped
    because their type is known and their row unchanged."""
    if not types:
        return {"mailbox_types": "not read (exclude_mailbox_types is empty)"}
    out: metadata.Metadata = {
        "mailbox_types": ", ".join(types),
        "purpose_requests": counts.get("asked", 0),
        "purpose_batches": counts.get("batches", 0),
        "purposes_read": counts.get("read", 0),
        "purposes_unreadable": counts.get("unreadable", 0),
        "purposes_skipped_known": counts.get("skipped_known", 0),
    }
    out |= {f"purposes_{k}": v for k, v in sorted(counts.items()) if k.startswith("type_")}
    return out


def _previous_read(previous: dt.datetime | None, zone: str) -> metadata.Metadata:
    """How long before this read the previous complete one was (the gaps plot over runs; the
    check graph_users_fresh says whether the tenant went stale in between)."""
    if previous is None:
        return {"previous_complete_read": "none (first read)"}
    return {
        "previous_complete_read": staleness.local(previous, zone),
        "hours_since_previous_read": round(
            (dt.datetime.now(dt.UTC) - previous).total_seconds() / 3600, 2
        ),
    }


@dg.multi_asset(
    specs=[
        dg.AssetSpec(key, description=text, group_name="extract", kinds={"python", "postgres"})
        for key, text in SPECS.items()
    ],
    partitions_def=tenant_partitions,
    pool="graph",
    retry_policy=GRAPH_RETRY,
    name="graph_directory",
)
def graph_directory(
    context: dg.AssetExecutionContext, config: ExtractConfig, database: Database, graph: Graph
) -> Iterator[dg.MaterializeResult]:
    """The tenant's directory read from Graph into staging.*: users, groups, memberships,
    subscribed SKUs and managers, incrementally through delta queries when a link is kept."""
    stop_if_asked(context)
    tenant, started = context.partition_key, time.monotonic()
    busy = runlimits.earlier_run(context.instance, tenant, context.run_id, liveness.JOBS)
    if busy is not None:  # started in the same instant as another run of the tenant
        raise dg.Failure(
            f"a sync of {tenant} is running ({runlimits.describe(busy)}): this run stopped "
            "before reading anything (one run per tenant at a time); sync again once it ends",
            allow_retries=False,
            metadata={"code": TENANT_BUSY},
        )
    full = context.run.tags.get(FULL_READ_TAG, "").lower() == "true"
    if config.user.strip():
        if full:
            raise dg.Failure(
                f"tenant {tenant}: a run of one person (user {config.user.strip()!r}) cannot "
                "also be a full read; launch one or the other",
                allow_retries=False,
            )
        yield from _one_person(context, database, graph, config.user, started)
        return
    with graph_failures():
        settings, client = _ready_client(database, graph, tenant)
        with database.engine().begin() as conn, db.tenant_lock(conn, tenant):
            previous = staleness.last_read(conn, tenant)
            test_pause("extract")
            # A stop request ends the read between pages: it rolls back, nothing is kept.
            stop = stop_checker(context)
            result = extract(
                client,
                conn,
                tenant,
                full=full,
                workers=graph.workers,
                on_event=stop,
                mailbox_types=bool(settings.exclude_mailbox_types),
            )
    maintenance = metadata.plain(
        db.vacuum_after_load(database.engine(), [f"staging.{t}" for t in COLUMNS])
    )
    stats = client.stats.as_metadata()
    common: metadata.Metadata = {
        **{f"mode_{k}": v for k, v in result.mode.items()},
        "full_read": result.full_read,
        **stats,
        "seconds": round(time.monotonic() - started, 3),
        **maintenance,
    }
    context.log.info(f"extract {tenant}: {result.mode} {dict(result.changes)} {stats}")
    unreadable: metadata.Metadata = {"unreadable_groups": len(result.unreadable)}
    if result.unreadable:
        lines = unreadable_lines(result.unreadable)
        unreadable["unreadable_groups_list"] = dg.MetadataValue.md(
            "\n".join(f"- {x}" for x in lines)
        )
        for line in lines:
            context.log.warning(f"extract {tenant}: {line}")
    for key, tables in TABLES.items():
        meta: metadata.Metadata = {t: result.staged.get(t, 0) for t in tables}
        if key == "graph_users":
            meta |= _previous_read(previous, settings.timezone)
            meta |= {f"graph_count_{k}": v for k, v in result.graph_counts.items()}
            meta |= {f"count_check_{k}": v for k, v in result.count_check.items()}
            meta |= {f"count_offset_{k}": v for k, v in result.count_offset.items()}
            meta |= {f"count_tolerance_{k}": v for k, v in result.count_tolerance.items()}
            meta |= {k: v for k, v in result.changes.items() if k.startswith("users_")}
            meta |= purpose_metadata(result.purposes, settings.exclude_mailbox_types)
        elif key == "graph_group_members":
            meta |= {f"members_{k}": v for k, v in sorted(result.member_types.items())}
            meta |= {
                k: v for k, v in result.changes.items() if k.startswith(("members", "groups_m"))
            }
            meta |= unreadable
        elif key == "graph_groups":
            meta |= {k: v for k, v in result.changes.items() if k.startswith("groups_")}
        yield dg.MaterializeResult(asset_key=key, metadata={**meta, **common})


def _ready_client(
    database: Database, graph: Graph, tenant: str
) -> tuple[TenantSettings, GraphClient]:
    """The tenant's settings and a Graph client whose token holds every permission the
    settings need: a missing one fails now, naming it and the setting that needs it, not at
    the first 403 halfway through the read."""
    settings = database.tenant_settings(tenant)
    client = graph.client(settings)
    if client.delegated is not None:
        client.delegated.engine = database.engine()
    health.require_permissions(client)
    return settings, client


def _one_person(
    context: dg.AssetExecutionContext,
    database: Database,
    graph: Graph,
    who: str,
    started: float,
) -> Iterator[dg.MaterializeResult]:
    """`sync --user`: the one person read into staging (extract/person.py), nothing else."""
    tenant = context.partition_key
    with graph_failures():
        settings, client = _ready_client(database, graph, tenant)
        with database.engine().begin() as conn, db.tenant_lock(conn, tenant):
            read = read_person(
                client, conn, tenant, who, mailbox_types=bool(settings.exclude_mailbox_types)
            )
    context.log.info(f"extract {tenant}: one person {person_line(read)}")
    common: metadata.Metadata = {
        "mode": "one person",
        **read.metadata(),
        **client.stats.as_metadata(),
        "seconds": round(time.monotonic() - started, 3),
    }
    for key in TABLES:
        yield dg.MaterializeResult(asset_key=key, metadata=common)


def person_line(read: PersonRead) -> str:
    """What the one-person read found, in a line (the run's log)."""
    parts = [
        f"{read.upn or read.graph_id} ({'new' if read.new else 'known'}, "
        f"{'enabled' if read.enabled else 'disabled'})",
        f"manager {read.manager_id or 'none'}",
        f"groups joined {read.joined or 'none'}, left {read.left or 'none'}",
    ]
    if read.unknown_groups:
        parts.append(f"{len(read.unknown_groups)} group(s) not read yet (the next sync)")
    return "; ".join(parts)


extract_assets = [graph_directory]
# The staging assets by key, for asset checks and dependencies (the multi-asset makes them all).
graph_users = dg.AssetKey("graph_users")
graph_groups = dg.AssetKey("graph_groups")
graph_group_members = dg.AssetKey("graph_group_members")
graph_subscribed_skus = dg.AssetKey("graph_subscribed_skus")
graph_user_managers = dg.AssetKey("graph_user_managers")

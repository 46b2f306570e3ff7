"""Extract: Graph → staging.*, one tenant partition at a time.

Each asset replaces its staging tables inside one transaction while pages stream in: a failed
read rolls back, and the downstream transform and load do not run.
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg
import sqlalchemy as sa

from sync_pipeline import db
from sync_pipeline.defs.partitions import tenant_partitions
from sync_pipeline.defs.resources import Database, Graph
from sync_pipeline.graph import GraphAuthError, GraphClient, GraphError, reader
from sync_pipeline.staging import (
    GraphDataError,
    StagingWriter,
    group_row,
    licence_rows,
    member_type,
    sku_row,
    user_row,
)

GRAPH_RETRY = dg.RetryPolicy(
    max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
EXTRACT = {
    "partitions_def": tenant_partitions,
    "group_name": "extract",
    "pool": "graph",
    "retry_policy": GRAPH_RETRY,
    "kinds": {"python", "postgres"},
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
    except GraphDataError as exc:
        raise dg.Failure(str(exc), allow_retries=False) from None


def _result(client: GraphClient, started: float, **counts: int) -> dg.MaterializeResult:
    return dg.MaterializeResult(
        metadata={
            **counts,
            **client.stats.as_metadata(),
            "seconds": round(time.monotonic() - started, 3),
        }
    )


def _ids(conn: sa.Connection, statement: str, tenant: str) -> list[str]:
    return list(conn.execute(db.q(statement), {"t": tenant}).scalars())


@dg.asset(**EXTRACT)
def graph_users(
    context: dg.AssetExecutionContext, database: Database, graph: Graph
) -> dg.MaterializeResult:
    """Every user of the tenant's directory, from Graph into staging.users and
    staging.user_licences (licence assignments come with each user)."""
    tenant, started = context.partition_key, time.monotonic()
    client = graph.client(database.tenant_settings(tenant))
    pages = 0
    with graph_failures(), database.engine().begin() as conn:
        writer = StagingWriter(conn, tenant)
        writer.clear("users")
        writer.clear("user_licences")
        for page in reader.users(client):
            pages += 1
            writer.copy("users", (user_row(tenant, u) for u in page))
            writer.copy("user_licences", [r for u in page for r in licence_rows(tenant, u)])
            context.log.debug(f"users: page {pages}, {writer.counts['users']} rows")
        writer.record("users", writer.counts["users"], pages)
    return _result(
        client,
        started,
        users=writer.counts["users"],
        licence_assignments=writer.counts["user_licences"],
        pages=pages,
    )


@dg.asset(**EXTRACT)
def graph_groups(
    context: dg.AssetExecutionContext, database: Database, graph: Graph
) -> dg.MaterializeResult:
    """Every group of the tenant with its type fields (groupTypes, mailEnabled,
    securityEnabled), into staging.groups."""
    tenant, started = context.partition_key, time.monotonic()
    client = graph.client(database.tenant_settings(tenant))
    pages = 0
    with graph_failures(), database.engine().begin() as conn:
        writer = StagingWriter(conn, tenant)
        writer.clear("groups")
        for page in reader.groups(client):
            pages += 1
            writer.copy("groups", (group_row(tenant, g) for g in page))
        writer.record("groups", writer.counts["groups"], pages)
    return _result(client, started, groups=writer.counts["groups"], pages=pages)


@dg.asset(**EXTRACT, deps=[graph_groups])
def graph_group_members(
    context: dg.AssetExecutionContext, database: Database, graph: Graph
) -> dg.MaterializeResult:
    """Direct members of every staged group (users, nested groups and other directory
    objects, each with its type), into staging.group_members."""
    tenant, started = context.partition_key, time.monotonic()
    client = graph.client(database.tenant_settings(tenant))
    by_type: dict[str, int] = {}
    with graph_failures(), database.engine().begin() as conn:
        group_ids = _ids(conn, "staging/group_ids", tenant)
        writer = StagingWriter(conn, tenant)
        writer.clear("group_members")
        for done, (group_id, members) in enumerate(
            reader.group_members(client, group_ids, graph.workers), start=1
        ):
            rows: list[tuple[Any, ...]] = []
            for m in members:
                kind = member_type(m)
                by_type[kind] = by_type.get(kind, 0) + 1
                rows.append((tenant, group_id, m["id"], kind))
            writer.copy("group_members", rows)
            if done % 500 == 0:
                context.log.info(f"members: {done}/{len(group_ids)} groups read")
        writer.record("group_members", writer.counts["group_members"], client.stats.requests)
    return _result(
        client,
        started,
        groups_read=len(group_ids),
        memberships=writer.counts["group_members"],
        **{f"members_{k}": v for k, v in sorted(by_type.items())},
    )


@dg.asset(**EXTRACT)
def graph_subscribed_skus(
    context: dg.AssetExecutionContext, database: Database, graph: Graph
) -> dg.MaterializeResult:
    """The tenant's licence products (SKUs) with their consumed and enabled units, into
    staging.subscribed_skus."""
    tenant, started = context.partition_key, time.monotonic()
    client = graph.client(database.tenant_settings(tenant))
    with graph_failures(), database.engine().begin() as conn:
        writer = StagingWriter(conn, tenant)
        writer.clear("subscribed_skus")
        writer.copy("subscribed_skus", [sku_row(tenant, s) for s in reader.subscribed_skus(client)])
        writer.record("subscribed_skus", writer.counts["subscribed_skus"], 1)
    return _result(client, started, skus=writer.counts["subscribed_skus"])


@dg.asset(**EXTRACT, deps=[graph_users])
def graph_user_managers(
    context: dg.AssetExecutionContext, database: Database, graph: Graph
) -> dg.MaterializeResult:
    """Each staged user's manager (none is a valid answer), into staging.user_managers."""
    tenant, started = context.partition_key, time.monotonic()
    client = graph.client(database.tenant_settings(tenant))
    with graph_failures(), database.engine().begin() as conn:
        user_ids = _ids(conn, "staging/user_ids", tenant)
        writer = StagingWriter(conn, tenant)
        writer.clear("user_managers")
        batch: list[tuple[Any, ...]] = []
        for user_id, manager_id in reader.managers(client, user_ids, graph.workers):
            if manager_id:
                batch.append((tenant, user_id, manager_id))
            if len(batch) >= 1000:
                writer.copy("user_managers", batch)
                batch = []
        writer.copy("user_managers", batch)
        writer.record("user_managers", writer.counts["user_managers"], client.stats.requests)
    return _result(
        client, started, users_read=len(user_ids), managers=writer.counts["user_managers"]
    )


extract_assets = [
    graph_users,
    graph_groups,
    graph_group_members,
    graph_subscribed_skus,
    graph_user_managers,
]

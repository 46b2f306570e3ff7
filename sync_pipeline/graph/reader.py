"""What the product reads from Graph, entity by entity, as streams of pages.

Per-object reads (members of each group, each user's manager) fan out over a small thread
pool; results stream back as they complete, so memory stays flat in tenant size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, TypeVar

from sync_pipeline.graph.client import GraphClient
from sync_pipeline.graph.errors import GraphError

USER_SELECT = (
    "id,userPrincipalName,mail,otherMails,proxyAddresses,displayName,givenName,surname,"
    "jobTitle,department,officeLocation,companyName,employeeId,accountEnabled,userType,"
    "assignedLicenses,createdDateTime,onPremisesSyncEnabled"
)
GROUP_SELECT = (
    "id,displayName,description,groupTypes,mailEnabled,securityEnabled,mail,createdDateTime"
)
MAX_PAGE = 999

T = TypeVar("T")
R = TypeVar("R")


def bounded_map(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """fn over items on `workers` threads, at most 2x workers in flight, in completion order.

    Written by hand: concurrent.futures' Executor.map submits every item up front and keeps
    every result until it is consumed in order, which grows with the tenant.
    """
    it = iter(items)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="graph") as pool:
        pending: set[Future[R]] = set()
        try:
            for item in it:
                pending.add(pool.submit(fn, item))
                if len(pending) >= 2 * workers:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in done:
                        yield f.result()
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    yield f.result()
        finally:
            for f in pending:
                f.cancel()


def users(client: GraphClient) -> Iterator[list[dict[str, Any]]]:
    return client.collection("/users", params={"$select": USER_SELECT, "$top": MAX_PAGE})


def groups(client: GraphClient) -> Iterator[list[dict[str, Any]]]:
    return client.collection("/groups", params={"$select": GROUP_SELECT, "$top": MAX_PAGE})


def subscribed_skus(client: GraphClient) -> list[dict[str, Any]]:
    return [sku for page in client.collection("/subscribedSkus") for sku in page]


def _members_of(client: GraphClient, group_id: str) -> tuple[str, list[dict[str, Any]]]:
    members: list[dict[str, Any]] = []
    for page in client.collection(
        f"/groups/{group_id}/members", params={"$select": "id", "$top": MAX_PAGE}
    ):
        members.extend(page)
    return group_id, members


def group_members(
    client: GraphClient, group_ids: Iterable[str], workers: int = 8
) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """(group id, its direct members) for every group; members keep their @odata.type."""
    return bounded_map(lambda gid: _members_of(client, gid), group_ids, workers)


def _manager_of(client: GraphClient, user_id: str) -> tuple[str, str | None]:
    try:
        body = client.get(f"/users/{user_id}/manager", params={"$select": "id"})
    except GraphError as exc:
        if exc.status == 404 and exc.code == "Request_ResourceNotFound":
            return user_id, None
        raise
    return user_id, body.get("id")


def managers(
    client: GraphClient, user_ids: Iterable[str], workers: int = 8
) -> Iterator[tuple[str, str | None]]:
    """(user id, manager id or None) for every user."""
    return bounded_map(lambda uid: _manager_of(client, uid), user_ids, workers)

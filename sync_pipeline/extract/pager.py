"""What the product reads from Graph, entity by entity, and how (the cheapest way measured).

- users: a users delta round (`$select` of every property the product needs); it is also the
  full read, and it yields the link for the next incremental read;
- managers: `manager` is in the users delta `$select`, so every item carries `manager@delta`
  (only selected properties trigger a delta item; without it a manager reassignment
  never reaches an incremental read); no call of its own (docs/extraction.md);
- restored and new objects of an incremental round: read whole by id (`$batch`es of
  `/users/{id}` and `/groups/{id}`), never staged from a `return=minimal` fragment;
- groups: a groups delta round, with the type fields;
- memberships: in tenants of up to DELTA_MEMBERS_MAX_USERS users, `members` is selected in the
  groups delta round: the fewest resource units, and later rounds report only the changed
  (group, member) pairs (`members@delta`). Larger tenants read `/groups/{id}/members?$select=id`
  in `$batch`es of 20 concurrently (the delta round is one sequential chain of ~250 members a
  page: minutes at 100k users), after taking a members link with `$deltatoken=latest`
  (delta.latest_link): their later rounds too report only the changed pairs;
- hidden-membership groups (`visibility` HiddenMembership): their members are always read
  with `/groups/{id}/members`, never taken from a delta round, since listing them needs
  Member.Read.Hidden besides GroupMember.Read.All and a delta round may leave them out
  without saying so (docs/extraction.md); without the permission Graph answers 403, and
  `members_batch(..., on_denied=...)` reports the group instead of failing;
- subscribed SKUs: one call;
- mailbox types (setting exclude_mailbox_types): `/users/{id}/mailboxSettings/userPurpose` in
  `$batch`es of 20, one batch at a time (Outlook runs at most 4 requests of an app at once,
  a batch's included, throttling-limits.md "Outlook service limits"), only for the people
  extract/purposes.py says are due.
No Dagster and no database here: these functions only talk to Graph.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

from sync_pipeline.graph.client import GraphClient
from sync_pipeline.graph.delta import DeltaRound
from sync_pipeline.graph.errors import GraphError

USER_SELECT = (
    "id,userPrincipalName,mail,otherMails,proxyAddresses,displayName,givenName,surname,"
    "jobTitle,department,officeLocation,companyName,employeeId,accountEnabled,userType,"
    "assignedLicenses,createdDateTime,onPremisesSyncEnabled"
)
# The users delta also selects the manager navigation property: items carry `manager@delta`.
USER_DELTA_SELECT = f"{USER_SELECT},manager"
GROUP_SELECT = (
    "id,displayName,description,groupTypes,mailEnabled,securityEnabled,mail,createdDateTime,"
    "visibility"
)
HIDDEN_MEMBERSHIP = "HiddenMembership"  # a group's `visibility` when its members are hidden
MAX_PAGE = 999
EXPAND_PAGE = 100  # Graph's maximum page size with $expand
BATCH_SIZE = 20  # Graph's maximum requests per $batch
# Up to this many users the groups delta carries the members (a chain of ~120 pages at most).
DELTA_MEMBERS_MAX_USERS = 2_000
MEMBERS_URL = "/groups/{}/members?$select=id&$top=999"
# A user or group read whole by id; a plain GET names the manager through $expand.
USER_URL = "/users/{}?$select=" + USER_SELECT + "&$expand=manager($select=id)"
GROUP_URL = "/groups/{}?$select=" + GROUP_SELECT
# A person's mailbox type (user-get-mailboxsettings.md): `{"value": "shared"}`.
PURPOSE_URL = "/users/{}/mailboxSettings/userPurpose"


def users_delta(client: GraphClient, link: str | None = None) -> DeltaRound:
    """A users delta round: from the stored link (changes only) or from the start (all)."""
    if link:
        return DeltaRound(client, link)
    return DeltaRound(client, "/users/delta", {"$select": USER_DELTA_SELECT})


def groups_delta(
    client: GraphClient, link: str | None = None, *, members: bool = False
) -> DeltaRound:
    """A groups delta round: type fields, and `members@delta` when `members` (see above)."""
    if link:
        return DeltaRound(client, link)
    select = f"{GROUP_SELECT},members" if members else GROUP_SELECT
    return DeltaRound(client, "/groups/delta", {"$select": select})


def subscribed_skus(client: GraphClient) -> list[dict[str, Any]]:
    return [sku for page in client.collection("/subscribedSkus") for sku in page]


def _chunks(items: list[str], size: int = BATCH_SIZE) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def is_hidden(group: dict[str, Any]) -> bool:
    return group.get("visibility") == HIDDEN_MEMBERSHIP


def members_batch(
    client: GraphClient,
    group_ids: list[str],
    on_denied: Callable[[str, GraphError], None] | None = None,
) -> Iterator[tuple[str, list[dict], bool]]:
    """(group id, a page of its direct members, first page?) for up to 20 groups: one `$batch`,
    then each large group's nextLinks page by page (a 100k-member group is never held whole).

    A group whose members Graph refuses (403, a hidden-membership group without
    Member.Read.Hidden) fails the read, unless `on_denied` is given: then it gets the group id
    and the error (whose hint names the permission), and the group yields nothing."""
    urls = {str(i): MEMBERS_URL.format(quote(gid, safe="")) for i, gid in enumerate(group_ids)}
    answers = client.batch(urls)
    for key, url in urls.items():
        status, body = answers[key]
        if status == 403 and on_denied is not None:
            on_denied(group_ids[int(key)], client.batch_error(url, status, body))
            continue
        if status != 200 or not isinstance(body, dict) or not isinstance(body.get("value"), list):
            raise client.batch_error(url, status, body)
        gid = group_ids[int(key)]
        yield gid, list(body["value"]), True
        if body.get("@odata.nextLink"):
            for page in client.collection(body["@odata.nextLink"]):
                yield gid, page, False


def manager_change(obj: dict[str, Any]) -> tuple[bool, str | None]:
    """(said, manager id) from a users delta item: `manager@delta` is a list of references,
    where an entry with `@removed`, or an empty list, takes the manager away; absent, the item
    says nothing of the manager (unchanged in a later round, none in a first one). A whole
    read by id carries `manager` ($expand) instead."""
    if "manager@delta" in obj:
        refs = obj.get("manager@delta") or []
        alive = [r for r in refs if isinstance(r, dict) and r.get("id") and "@removed" not in r]
        return True, (str(alive[-1]["id"]) if alive else None)
    if "manager" in obj:
        ref = obj.get("manager")
        return True, (str(ref["id"]) if isinstance(ref, dict) and ref.get("id") else None)
    return False, None


def objects_batch(client: GraphClient, kind: str, ids: list[str]) -> list[dict[str, Any]]:
    """Users or groups read whole by id, 20 a call; one Graph no longer has (404: deleted
    since the delta round listed it) is left out."""
    template = USER_URL if kind == "users" else GROUP_URL
    urls = {str(i): template.format(quote(oid, safe="")) for i, oid in enumerate(ids)}
    out: list[dict[str, Any]] = []
    for key, (status, body) in client.batch(urls).items():
        if status == 404:
            continue
        if status != 200 or not isinstance(body, dict) or not body.get("id"):
            raise client.batch_error(urls[key], status, body)
        out.append(body)
    return out


def purposes_batch(client: GraphClient, ids: list[str]) -> list[tuple[str, str | None, str | None]]:
    """(user id, userPurpose, error code) for up to 20 people, in one `$batch`. A 404 (no
    Exchange Online mailbox: MailboxNotEnabledForRESTAPI, or the user gone since the round
    listed them) is no purpose and its code; anything else but a 200 fails the read (a 403
    names MailboxSettings.Read)."""
    urls = {str(i): PURPOSE_URL.format(quote(uid, safe="")) for i, uid in enumerate(ids)}
    out: list[tuple[str, str | None, str | None]] = []
    for key, (status, body) in client.batch(urls).items():
        uid = ids[int(key)]
        if status == 404:
            error = body.get("error") if isinstance(body, dict) else None
            code = error.get("code") if isinstance(error, dict) else None
            out.append((uid, None, str(code or "404")))
            continue
        value = body.get("value") if isinstance(body, dict) else None
        if status != 200 or not isinstance(value, str) or not value:
            raise client.batch_error(urls[key], status, body)
        out.append((uid, value, None))
    return out


def chunks(items: list[str]) -> Iterator[list[str]]:
    return _chunks(items)

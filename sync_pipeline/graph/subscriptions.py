"""Graph subscriptions for change notifications, through the GraphClient: create (POST
/subscriptions), renew (PATCH), delete.

Directory resources (`users`, `groups`) take `changeType` `updated,deleted` (a creation
arrives as `updated`) and live at most 41,760 minutes, under 29 days (the subscription
resource's lifetimes); Graph answers 400 beyond that. Creating one makes Graph send the
validation request to the notification URL first: a receiver that does not answer it
refuses the subscription (400 `ValidationError`). Each subscription gets a clientState of
its own, 256 random bits, returned to the caller to store hashed; it is never logged.
Permissions: User.Read.All for users, Group.Read.All for groups
(subscription-post-subscriptions.md).
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass

from sync_pipeline.graph.client import GraphClient
from sync_pipeline.graph.errors import GraphError

RESOURCES = ("users", "groups")
CHANGE_TYPE = "updated,deleted"
MAX_LIFETIME = dt.timedelta(minutes=41_760)
# asked for at each creation or renewal: under the maximum, so that a clock a few minutes
# ahead of Graph's is never refused
LIFETIME = dt.timedelta(days=28)
RENEW_WITHIN = dt.timedelta(days=3)  # renewed once it has less than this left


@dataclass(frozen=True)
class Created:
    subscription_id: str
    client_state: str
    expires_at: dt.datetime


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _expiry(body: dict, asked: dt.datetime) -> dt.datetime:
    """The expiry Graph answered (seven fractional digits, as Graph writes them), else the
    one asked for."""
    text = body.get("expirationDateTime")
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z?", str(text or ""))
    if match is None:
        return asked
    fraction = (match.group(2) or ".0")[:7].ljust(7, "0")
    return dt.datetime.fromisoformat(match.group(1) + fraction).replace(tzinfo=dt.UTC)


def create(client: GraphClient, resource: str, notification_url: str, now: dt.datetime) -> Created:
    """A new subscription on `resource`, its notifications and lifecycle events both to
    `notification_url` (the receiver tells them apart by their body)."""
    client_state = secrets.token_urlsafe(32)  # 43 characters; Graph allows 128
    expires = now + LIFETIME
    body = {
        "changeType": CHANGE_TYPE,
        "notificationUrl": notification_url,
        "lifecycleNotificationUrl": notification_url,
        "resource": resource,
        "expirationDateTime": _iso(expires),
        "clientState": client_state,
        "latestSupportedTlsVersion": "v1_2",
    }
    answer = client.get_json("POST", "/subscriptions", json=body, ok=(201,))
    sub_id = answer.get("id")
    if not isinstance(sub_id, str) or not sub_id:
        raise GraphError(
            tenant=client.tenant,
            status=201,
            code="MalformedSubscription",
            message="Graph created a subscription without an id",
            path="/subscriptions",
        )
    return Created(sub_id, client_state, _expiry(answer, expires))


def renew(client: GraphClient, subscription_id: str, now: dt.datetime) -> dt.datetime:
    """Extend the subscription (which reauthorizes it too); its new expiry."""
    expires = now + LIFETIME
    answer = client.get_json(
        "PATCH",
        f"/subscriptions/{subscription_id}",
        json={"expirationDateTime": _iso(expires)},
    )
    return _expiry(answer, expires)


def delete(client: GraphClient, subscription_id: str) -> None:
    """Delete the subscription; one Graph no longer has (404) is gone already."""
    client.request("DELETE", f"/subscriptions/{subscription_id}", ok=(204, 404))

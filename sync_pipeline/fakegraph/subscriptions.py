"""Change notifications: `POST/GET/PATCH/DELETE /subscriptions` on `users` and `groups`, the
validation request sent to a new subscription's URLs, change notifications after the admin
ops that change users or groups, and lifecycle events on demand.

The shapes follow Microsoft's docs (microsoft-graph-docs-contrib):
`concepts/change-notifications-delivery-webhooks.md` (validation: a POST to
`{notificationUrl}?validationToken=...` answered within 10 s with 200, `text/plain` and the
token; a notification: `{"value": [{subscriptionId, clientState, changeType, resource,
resourceData: {id, @odata.type, @odata.id}, subscriptionExpirationDateTime, tenantId}]}`),
`concepts/change-notifications-lifecycle-events.md` (`lifecycleEvent`: `subscriptionRemoved`,
`reauthorizationRequired`, `missed`, with no resource), `subscription-post-subscriptions.md`
(201 and the subscription; a failed validation is a 400) and the subscription resource's
lifetimes (user, group: at most 41,760 minutes).

Deliveries go out from one background thread, in order, as Graph's do (never from inside the
admin call that caused them). The fake verifies the receiver's TLS with the CA it is given
(`notification_ca`) and posts only to the hosts in `notification_hosts` (loopback by default):
tests never reach another address.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import urllib.parse
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import requests

from sync_pipeline.fakegraph.permissions import _Permissions
from sync_pipeline.fakegraph.wire import GraphError, _json_resp, _not_found, _Resp

log = logging.getLogger(__name__)

MAX_LIFETIME_MINUTES = 41_760  # user, group and other directory resources: under 29 days
LIFECYCLE_EVENTS = ("subscriptionRemoved", "reauthorizationRequired", "missed")
VALIDATION_TIMEOUT = 10.0  # seconds the receiver has to answer the validation request
DELIVERY_TIMEOUT = 3.0  # Graph's notification client waits 3 s for a 2xx
_RESOURCES = {"users": "#Microsoft.Graph.User", "groups": "#Microsoft.Graph.Group"}
_USER_OPS = {"add_user", "update_user", "delete_user", "restore_user", "set_manager"}
_GROUP_OPS = {
    "add_group",
    "update_group",
    "delete_group",
    "restore_group",
    "add_members",
    "remove_members",
}


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


def _parse_time(text: Any) -> dt.datetime:
    if not isinstance(text, str):
        raise GraphError(400, "InvalidRequest", "expirationDateTime is required.")
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise GraphError(400, "InvalidRequest", f"Invalid expirationDateTime '{text}'.") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _bad_request(message: str) -> GraphError:
    return GraphError(400, "InvalidRequest", message)


class _Subscriptions(_Permissions):
    """The subscriptions of every tenant, and their deliveries."""

    def _subscriptions_state(self) -> dict[str, dict[str, Any]]:
        """The live subscriptions: Graph deletes one once it expires unrenewed."""
        now = dt.datetime.now(dt.UTC)
        for sub_id in [k for k, s in self._subs.items() if s["expirationDateTime"] <= now]:
            del self._subs[sub_id]
        return self._subs

    # -- HTTP: /v1.0/subscriptions
    def _route_subscriptions(
        self, method: str, parts: list[str], body: bytes, base: str, tenant_id: str
    ) -> _Resp:
        subs = self._subscriptions_state()
        if len(parts) == 1:
            if method == "POST":
                return self._create_subscription(body, base, tenant_id)
            if method == "GET":
                value = [self._view(s) for s in subs.values() if s["tenantId"] == tenant_id]
                return _json_resp(200, {"value": value})
        elif len(parts) == 2:
            sub = subs.get(parts[1])
            if sub is None or sub["tenantId"] != tenant_id:
                raise _not_found(parts[1])
            if method == "GET":
                return _json_resp(200, self._view(sub))
            if method == "PATCH":
                payload = self._payload(body)
                sub["expirationDateTime"] = self._expiry(payload.get("expirationDateTime"))
                return _json_resp(200, self._view(sub))
            if method == "DELETE":
                del subs[parts[1]]
                return _Resp(204, b"")
        raise GraphError(
            405, "Request_BadRequest", f"The HTTP method '{method}' is not allowed here."
        )

    @staticmethod
    def _payload(body: bytes) -> dict[str, Any]:
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            raise _bad_request("The request body is not valid JSON.") from None
        if not isinstance(payload, dict):
            raise _bad_request("The request body must be a JSON object.")
        return payload

    @staticmethod
    def _expiry(text: Any) -> dt.datetime:
        when = _parse_time(text)
        now = dt.datetime.now(dt.UTC)
        if when <= now:
            raise _bad_request("Subscription expiration must be in the future.")
        if when > now + dt.timedelta(minutes=MAX_LIFETIME_MINUTES):
            raise _bad_request(
                f"Subscription expiration can only be {MAX_LIFETIME_MINUTES} minutes in the future."
            )
        return when

    def _create_subscription(self, body: bytes, base: str, tenant_id: str) -> _Resp:
        payload = self._payload(body)
        resource = str(payload.get("resource", "")).strip("/")
        if resource not in _RESOURCES:
            raise _bad_request(f"Resource '{resource}' is not supported by this fake.")
        # "Creating a subscription requires read scope to the resource": the fake asks the
        # permission it asks for reading it (Graph asks Group.Read.All for groups)
        self._require_permission(self._tenants[tenant_id], f"/{resource}")
        change = [c.strip() for c in str(payload.get("changeType", "")).split(",") if c.strip()]
        if not change or any(c not in ("created", "updated", "deleted") for c in change):
            raise _bad_request("changeType must list created, updated or deleted.")
        if "created" in change:  # directory resources: creation arrives as `updated`
            raise _bad_request("changeType 'created' is not supported for this resource.")
        client_state = payload.get("clientState")
        if client_state is not None and (
            not isinstance(client_state, str) or len(client_state) > 128
        ):
            raise _bad_request("clientState must be text of at most 128 characters.")
        expires = self._expiry(payload.get("expirationDateTime"))
        urls = [payload.get("notificationUrl"), payload.get("lifecycleNotificationUrl")]
        for url in dict.fromkeys(u for u in urls if u is not None):
            self._validate_endpoint(str(url))
        sub_id = str(uuid.uuid4())
        sub = {
            "id": sub_id,
            "resource": resource,
            "changeType": ",".join(change),
            "clientState": client_state,
            "notificationUrl": payload.get("notificationUrl"),
            "lifecycleNotificationUrl": payload.get("lifecycleNotificationUrl"),
            "expirationDateTime": expires,
            "tenantId": tenant_id,
        }
        self._subs[sub_id] = sub
        view = {"@odata.context": f"{base}/v1.0/$metadata#subscriptions/$entity"}
        return _json_resp(201, view | self._view(sub))

    @staticmethod
    def _view(sub: Mapping[str, Any]) -> dict[str, Any]:
        return {
            **{k: v for k, v in sub.items() if k != "tenantId"},
            "expirationDateTime": _iso(sub["expirationDateTime"]),
            "latestSupportedTlsVersion": "v1_2",
            "notificationContentType": "application/json",
        }

    def _session(self) -> requests.Session:
        session = requests.Session()
        session.trust_env = False  # an environment REQUESTS_CA_BUNDLE must not replace the CA
        session.verify = str(self.notification_ca) if self.notification_ca else True
        return session

    def _check_url(self, url: str) -> None:
        split = urllib.parse.urlsplit(url)
        if split.scheme != "https":
            raise _bad_request("The notification URL must be an https:// URL.")
        if (split.hostname or "") not in self.notification_hosts:
            raise _bad_request(f"The notification URL's host {split.hostname!r} is not reachable.")

    def _validate_endpoint(self, url: str) -> None:
        """The documented handshake: the URL-encoded token in the query string, the decoded
        token answered in plain text with 200 within 10 s; anything else refuses the
        subscription (a 400, as Graph answers)."""
        self._check_url(url)
        token = f"Validation: Testing client application reachability {uuid.uuid4()}"
        sep = "&" if urllib.parse.urlsplit(url).query else "?"
        target = f"{url}{sep}{urllib.parse.urlencode({'validationToken': token})}"
        failed = GraphError(
            400,
            "ValidationError",
            "Subscription validation request failed. Notification endpoint must respond "
            "with 200 OK to validation request.",
        )
        try:
            with self._session() as session:
                answer = session.post(
                    target,
                    data=b"",
                    headers={"Content-Type": "text/plain; charset=utf-8"},
                    timeout=VALIDATION_TIMEOUT,
                )
        except requests.RequestException:
            raise failed from None
        kind = answer.headers.get("content-type", "").split(";")[0].strip().lower()
        if answer.status_code != 200 or kind != "text/plain" or answer.text != token:
            raise failed

    # -- deliveries
    def _notify_ops(
        self, tenant_id: str, ops: Sequence[Mapping[str, Any]], results: Sequence[Any]
    ) -> None:
        """Queue a change notification for each op that changed a user or a group, to the
        tenant's subscriptions on that resource (called under the lock by `mutate`)."""
        subs = self._subscriptions_state()
        if not subs:
            return
        for op, result in zip(ops, results, strict=True):
            kind = op.get("op")
            resource = "users" if kind in _USER_OPS else "groups" if kind in _GROUP_OPS else None
            if resource is None or not isinstance(result, str):
                continue
            gone = (
                kind in ("delete_user", "delete_group") and op.get("reason", "deleted") == "deleted"
            )
            change = "deleted" if gone else "updated"
            for sub in list(subs.values()):
                if sub["tenantId"] != tenant_id or sub["resource"] != resource:
                    continue
                if change not in sub["changeType"].split(","):
                    continue
                odata_id = f"{resource.capitalize()}/{result}"
                item = self._envelope(sub) | {
                    "changeType": change,
                    "resource": odata_id,
                    "resourceData": {
                        "@odata.type": _RESOURCES[resource],
                        "@odata.id": odata_id,
                        "id": result,
                        "organizationId": tenant_id,
                    },
                }
                self._send(sub["notificationUrl"], item)

    @staticmethod
    def _envelope(sub: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "id": str(uuid.uuid4()),
            "subscriptionId": sub["id"],
            "subscriptionExpirationDateTime": _iso(sub["expirationDateTime"]),
            "clientState": sub["clientState"],
            "tenantId": sub["tenantId"],
        }

    def _send(self, url: str | None, item: dict[str, Any]) -> None:
        if not url:
            return
        self._subscriptions_state()
        self._outbox.put((url, item))
        if self._courier is None or not self._courier.is_alive():
            self._courier = threading.Thread(
                target=self._deliver, name="fakegraph-notify", daemon=True
            )
            self._courier.start()

    def _deliver(self) -> None:
        with self._session() as session:
            while True:
                job = self._outbox.get()
                try:
                    if job is None:
                        return
                    url, item = job
                    status: int | str
                    try:
                        self._check_url(url)
                        answer = session.post(url, json={"value": [item]}, timeout=DELIVERY_TIMEOUT)
                        status = answer.status_code
                    except (requests.RequestException, GraphError) as exc:
                        status = type(exc).__name__
                    with self._lock:
                        self._delivered.append({"item": item, "status": status})
                finally:
                    self._outbox.task_done()

    # -- admin (Python API; also under /_admin/subscriptions)
    def subscriptions(self, tenant_id: str | None = None) -> list[dict[str, Any]]:
        """The live subscriptions (of one tenant), as GET /subscriptions shows them."""
        with self._lock:
            subs = self._subscriptions_state().values()
            return [self._view(s) for s in subs if tenant_id in (None, s["tenantId"])]

    def emit_lifecycle(self, subscription_id: str, event: str) -> None:
        """Send a lifecycle notification (`subscriptionRemoved`, `reauthorizationRequired`,
        `missed`) for the subscription to its lifecycleNotificationUrl (else notificationUrl)."""
        if event not in LIFECYCLE_EVENTS:
            raise ValueError(f"event must be one of {', '.join(LIFECYCLE_EVENTS)}, got {event!r}")
        with self._lock:
            sub = self._subscriptions_state().get(subscription_id)
            if sub is None:
                raise KeyError(f"no subscription {subscription_id}")
            url = sub["lifecycleNotificationUrl"] or sub["notificationUrl"]
            self._send(url, self._envelope(sub) | {"lifecycleEvent": event})

    def remove_subscription(self, subscription_id: str) -> None:
        """Graph removes the subscription and says so with a `subscriptionRemoved` event."""
        with self._lock:
            self.emit_lifecycle(subscription_id, "subscriptionRemoved")
            del self._subscriptions_state()[subscription_id]

    def deliveries(self, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Every notification sent so far with the receiver's status (or the connection's
        error), once those queued are delivered (waits at most `timeout` seconds)."""
        self._subscriptions_state()
        done = threading.Event()

        def wait() -> None:
            self._outbox.join()
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        done.wait(timeout)
        with self._lock:
            return [dict(d) for d in self._delivered]

    def _admin_subscriptions(self, method: str, parts: list[str], payload: dict) -> _Resp | None:
        if parts == ["subscriptions"] and method == "GET":
            return _json_resp(200, {"value": self.subscriptions(payload.get("tenant_id"))})
        if len(parts) == 3 and parts[0] == "subscriptions" and method == "POST":
            if parts[2] == "lifecycle":
                self.emit_lifecycle(parts[1], str(payload.get("event", "")))
                return _json_resp(200, {"ok": True})
            if parts[2] == "remove":
                self.remove_subscription(parts[1])
                return _json_resp(200, {"ok": True})
        return None

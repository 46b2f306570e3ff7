"""Each tenant's Graph subscriptions kept as its settings ask (the notification_subscriptions
sensor): created on `users` and `groups` when change_notifications is on, renewed when less
than three days are left, recreated after `subscriptionRemoved` (or a
`reauthorizationRequired` whose renewal fails), after a change of notification_url and once
expired, and deleted when change_notifications is turned off or the tenant is removed.

One tenant's failure (a refused permission, a receiver that fails the handshake) is
reported and leaves the others alone; the next tick tries again. Syncs never depend on
subscriptions: while there are none, the schedule still syncs the tenant.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa

from sync_pipeline.core.settings import TenantSettings
from sync_pipeline.graph import subscriptions
from sync_pipeline.graph.client import GraphClient
from sync_pipeline.graph.errors import CredentialError, GraphError
from sync_pipeline.notifications import state

log = logging.getLogger(__name__)

ClientFactory = Callable[[TenantSettings], GraphClient]


@dataclass
class Upkeep:
    """What one pass did: 'tenant/resource' per action, and each failure's message."""

    created: list[str] = field(default_factory=list)
    renewed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        parts = [
            f"{name} {', '.join(items)}"
            for name, items in (
                ("created", self.created),
                ("renewed", self.renewed),
                ("deleted", self.deleted),
            )
            if items
        ]
        parts += [f"failed {tenant}: {why}" for tenant, why in self.failed.items()]
        return "; ".join(parts) or "every subscription in step"


def _wanted(sub: state.Subscription | None, url: str, now: dt.datetime) -> str:
    """What a stored subscription needs: keep, renew or create (anew)."""
    if sub is None or sub.notification_url != url or sub.expires_at <= now:
        return "create"
    if sub.lifecycle == "subscriptionRemoved":
        return "create"
    if sub.lifecycle == "reauthorizationRequired":
        return "renew"  # a renewal reauthorizes too (change-notifications-lifecycle-events.md)
    if sub.expires_at - now < subscriptions.RENEW_WITHIN:
        return "renew"
    return "keep"


def keep_tenant(
    engine: sa.Engine,
    settings: TenantSettings | None,
    slug: str,
    client_factory: ClientFactory,
    now: dt.datetime,
    done: Upkeep,
) -> None:
    """Bring one tenant's subscriptions in step with its settings (None: removed)."""
    with engine.connect() as conn:
        stored = state.subscriptions(conn, slug)
    url = settings.notification_url if settings and settings.change_notifications else None
    plan = {
        r: _wanted(stored.get(r), url, now) if url else "delete" for r in subscriptions.RESOURCES
    }
    if all(a == "keep" for a in plan.values()) or (not stored and not url):
        return
    if settings is None:  # removed: nothing to sign in with; Graph lets them expire
        with engine.begin() as conn:
            for sub in stored.values():
                state.forget(conn, slug, sub.subscription_id)
                done.deleted.append(f"{slug}/{sub.resource}")
        return
    client = None
    try:
        client = client_factory(settings)
        for resource, action in plan.items():
            old = stored.get(resource)
            if action == "renew" and old is not None:
                try:
                    expires = subscriptions.renew(client, old.subscription_id, now)
                except GraphError as exc:
                    log.info(
                        "%s/%s: renewal refused (%s), subscribing anew", slug, resource, exc.code
                    )
                    action = "create"
                else:
                    with engine.begin() as conn:
                        state.renewed(conn, slug, old.subscription_id, expires)
                    done.renewed.append(f"{slug}/{resource}")
            if action in ("create", "delete") and old is not None:
                subscriptions.delete(client, old.subscription_id)
                with engine.begin() as conn:
                    state.forget(conn, slug, old.subscription_id)
                if action == "delete":
                    done.deleted.append(f"{slug}/{resource}")
            if action == "create" and url:
                made = subscriptions.create(client, resource, url, now)
                with engine.begin() as conn:
                    state.save(
                        conn,
                        slug,
                        resource,
                        made.subscription_id,
                        made.client_state,
                        url,
                        made.expires_at,
                    )
                done.created.append(f"{slug}/{resource}")
    except (GraphError, CredentialError) as exc:
        done.failed[slug] = str(exc)
    finally:
        if client is not None:
            client.close()


def keep_all(
    engine: sa.Engine,
    registered: list[TenantSettings],
    client_factory: ClientFactory,
    now: dt.datetime,
) -> Upkeep:
    """Every registered tenant with change_notifications, and every tenant still holding
    subscriptions (turned off, or removed)."""
    done = Upkeep()
    by_slug = {s.slug: s for s in registered}
    with engine.connect() as conn:
        holding = set(state.subscribed_tenants(conn))
    wanted = {s.slug for s in registered if s.change_notifications}
    for slug in sorted(wanted | holding):
        keep_tenant(engine, by_slug.get(slug), slug, client_factory, now, done)
    return done

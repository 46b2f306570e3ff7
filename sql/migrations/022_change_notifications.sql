-- Graph change notifications (notifications/, graph/subscriptions.py, the receiver and the
-- notification sensors). Idempotent.

-- Each tenant's Graph subscriptions, one per resource (users, groups). The clientState
-- secret is never stored: only its SHA-256, against which the receiver checks each
-- notification. `lifecycle` holds a lifecycle event (subscriptionRemoved,
-- reauthorizationRequired) that asks the subscriptions sensor for a new subscription.
CREATE TABLE IF NOT EXISTS sync.graph_subscriptions (
    tenant            text NOT NULL,
    resource          text NOT NULL,
    subscription_id   text NOT NULL UNIQUE,
    client_state_hash bytea NOT NULL,
    notification_url  text NOT NULL,
    expires_at        timestamptz NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    renewed_at        timestamptz,
    lifecycle         text,
    lifecycle_at      timestamptz,
    PRIMARY KEY (tenant, resource)
);

-- Tenants a notification (or a `missed` lifecycle event) marked for an incremental sync.
-- The trigger sensor consumes a mark once its last notification is older than the debounce,
-- deleting it only if no notification came meanwhile (last_at unchanged).
CREATE TABLE IF NOT EXISTS sync.dirty_tenants (
    tenant        text PRIMARY KEY,
    first_at      timestamptz NOT NULL,
    last_at       timestamptz NOT NULL,
    notifications bigint NOT NULL DEFAULT 1,
    reason        text NOT NULL
);

-- What the receiver accepted and rejected, per tenant ('' when the subscription is unknown)
-- and kind: accepted, rejected (clientState mismatch or unknown subscription), and
-- lifecycle:<event>.
CREATE TABLE IF NOT EXISTS sync.notification_counts (
    tenant  text NOT NULL,
    kind    text NOT NULL,
    count   bigint NOT NULL DEFAULT 0,
    last_at timestamptz NOT NULL,
    PRIMARY KEY (tenant, kind)
);

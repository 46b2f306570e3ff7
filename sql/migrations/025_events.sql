-- The outbox (issue 18): one row per event the app can act on (joiner, leaver, mover,
-- address_changed, group_created, group_removed), written by sql/outbox/emit.sql from the
-- audit rows (sync.changes) of an apply, an undo or a decision, in that transaction: an event
-- exists exactly when its change does. `id` is the consumer's cursor: a tenant's writers hold
-- its advisory lock until they commit, so within a tenant ids become visible in increasing
-- order (across tenants they need not: read with `tenant = ... AND id > cursor`).
-- `payload` follows docs/events.schema.json (its `version`). Idempotent.
CREATE TABLE IF NOT EXISTS sync.events (
    id          bigserial PRIMARY KEY,
    tenant      text NOT NULL,
    run_id      bigint NOT NULL,      -- sync.runs.id: the sync, undo or decision that made it
    type        text NOT NULL CHECK (type IN ('joiner', 'leaver', 'mover', 'address_changed',
                                              'group_created', 'group_removed')),
    user_id     bigint,               -- app.users.id (person events)
    group_id    bigint,               -- app.groups.id (group events)
    external_id text,                 -- the Graph id of the person or group
    payload     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS events_cursor ON sync.events (tenant, id);

-- Webhook delivery (sync_pipeline/outbox/delivery.py, run by the event_deliveries sensor):
-- per tenant, the last event id delivered or dead-lettered, and the head event's retries.
CREATE TABLE IF NOT EXISTS sync.event_cursor (
    tenant          text PRIMARY KEY,
    delivered_id    bigint NOT NULL DEFAULT 0,  -- every event up to it was delivered or dead
    attempts        int NOT NULL DEFAULT 0,     -- failed attempts of the next event
    next_attempt_at timestamptz,                -- not before (backoff)
    last_error      text,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
-- Events given up on after webhook_max_attempts: kept (never deleted by retention) until an
-- operator redelivers them; the sensor's metadata and its run's log name them.
CREATE TABLE IF NOT EXISTS sync.event_dead_letters (
    tenant     text NOT NULL,
    event_id   bigint NOT NULL,
    attempts   int NOT NULL,
    last_error text,
    dead_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, event_id)
);
-- A run's events (metadata, `history`, an app asking "what did run N do"), and retention.
CREATE INDEX IF NOT EXISTS events_run ON sync.events (tenant, run_id);
-- The outbox's merge of a person's audit rows (before with before, after with after) in one
-- pass: `||` as an aggregate (sql/outbox/emit.sql).
CREATE OR REPLACE AGGREGATE sync.jsonb_concat_agg(jsonb) (
    SFUNC = jsonb_concat, STYPE = jsonb, INITCOND = '{}'
);

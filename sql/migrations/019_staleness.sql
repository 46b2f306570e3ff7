-- Staleness (issue 17, sync_pipeline/registry/staleness.py): a tenant whose last complete read
-- is older than its stale_after_hours is in a stale episode. One row per tenant in one: which
-- read it is about (null: never read), and when the staleness sensor last reported it (the
-- freshness check's evaluation and, for tenants with auto_sync, the ops alert) and told the
-- admin. Kept here, not in the sensor's cursor, so that a daemon restart or a second daemon
-- never alerts twice. The row goes when a fresh read ends the episode (or the tenant goes).
-- Idempotent.
CREATE TABLE IF NOT EXISTS sync.stale_tenants (
    tenant            text PRIMARY KEY,
    read_at           timestamptz,          -- the last complete read (staging.extractions)
    stale_since       timestamptz NOT NULL, -- read_at (or registration) + stale_after_hours
    alerted_at        timestamptz,          -- last reported: ops alerted, check recorded
    alerts            integer NOT NULL DEFAULT 0,
    admin_notified_at timestamptz           -- the tenant's admin told what to fix (once)
);

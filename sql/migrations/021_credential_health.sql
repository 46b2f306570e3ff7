-- Credential and permission health (graph/health.py, the credential_health sensor).
-- Idempotent.

-- When each tenant's health was last examined, and what was found (no secrets: statuses and
-- what to do), so that the sensor examines each tenant about once a day, a batch per tick.
CREATE TABLE IF NOT EXISTS sync.health_checks (
    tenant     text PRIMARY KEY,
    checked_at timestamptz NOT NULL,
    status     text NOT NULL,
    findings   jsonb NOT NULL
);

-- The expiry alerts sent: one per credential, expiry date and threshold (30, 14, 7 or 0 days
-- before), so that each is sent once; a renewed credential has a new expiry and alerts anew.
CREATE TABLE IF NOT EXISTS sync.credential_alerts (
    tenant     text NOT NULL,
    credential text NOT NULL,
    expires_at timestamptz NOT NULL,
    days       integer NOT NULL,
    sent_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, credential, expires_at, days)
);

-- When each check last validated a tenant's rows whole (checks/scope.py): between those
-- times a check validates only the rows that changed, plus aggregates over all of them.
-- Idempotent.
CREATE TABLE IF NOT EXISTS sync.verifications (
    tenant      text NOT NULL,
    check_name  text NOT NULL,
    verified_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, check_name)
);

-- Which path built each snapshot last (full | incremental): after a full rebuild the snapshot
-- checks validate the whole snapshot.
ALTER TABLE sync.snapshot_state ADD COLUMN IF NOT EXISTS path text NOT NULL DEFAULT 'full';

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

-- Snapshot writes are recorded for the incremental diff only once the tenant has an applied
-- diff (sync.diff_state): before that its next diff is whole anyway, and a first build would
-- record every user (and every membership's user) for nothing.
CREATE OR REPLACE FUNCTION sync.dirty_snapshot() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- TG_ARGV[0]: the Graph user id column of the table
    EXECUTE 'INSERT INTO sync.diff_dirty AS d (tenant, kind, id)
         SELECT DISTINCT c.tenant, ''user'', c.' || quote_ident(TG_ARGV[0]) || ' FROM changed c
         WHERE EXISTS (SELECT 1 FROM sync.diff_state s WHERE s.tenant = c.tenant)
         ON CONFLICT (tenant, kind, id) DO UPDATE SET seq = nextval(''sync.diff_dirty_seq'')';
    RETURN NULL;
END $$;

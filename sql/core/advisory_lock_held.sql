-- Whether some session holds the advisory lock named :name (hashtext, as pg_advisory_lock
-- takes it) in this database: a tenant's apply lock (db.tenant_lock, 'sync-pipeline:tenant:…')
-- or a run's liveness lock (runs/hold_alive, 'sync-pipeline:run:…').
SELECT EXISTS (
    SELECT 1
    FROM pg_locks
    WHERE locktype = 'advisory' AND granted
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND objid::bigint = (hashtext(:name)::bigint & 4294967295)
)

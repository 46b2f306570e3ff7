-- Whether some session holds the tenant's apply lock (db.tenant_lock) in this database.
SELECT EXISTS (
    SELECT 1
    FROM pg_locks
    WHERE locktype = 'advisory' AND granted
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND objid::bigint = (hashtext('sync-pipeline:tenant:' || :tenant)::bigint & 4294967295)
)

-- Whether the process of this Dagster run still holds its liveness lock (runs/hold_alive).
SELECT EXISTS (
    SELECT 1
    FROM pg_locks
    WHERE locktype = 'advisory' AND granted
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND objid::bigint = (hashtext('sync-pipeline:run:' || :dagster_run_id)::bigint & 4294967295)
)

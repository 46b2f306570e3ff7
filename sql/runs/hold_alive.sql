-- Held (session-scoped) by a run's process for as long as it runs: Postgres drops it when the
-- process dies, however it dies, which is how the next sync tells a dead run from a live one.
SELECT pg_advisory_lock(hashtext('sync-pipeline:run:' || :dagster_run_id))

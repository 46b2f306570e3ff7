SELECT pg_advisory_unlock(hashtext('sync-pipeline:run:' || :dagster_run_id))

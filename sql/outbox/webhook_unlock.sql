SELECT pg_advisory_unlock(hashtext('sync-pipeline:webhook:' || :tenant))

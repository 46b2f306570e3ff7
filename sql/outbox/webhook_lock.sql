-- One deliverer per tenant (session lock: the deliverer commits after every event).
SELECT pg_try_advisory_lock(hashtext('sync-pipeline:webhook:' || :tenant))

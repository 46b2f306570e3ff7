-- A stale tenant seen by the sensor: its episode starts, or goes on; a different read (or a
-- tenant read for the first time, then stale again) is a new episode, reported afresh.
INSERT INTO sync.stale_tenants AS s (tenant, read_at, stale_since)
VALUES (:tenant, :read_at, :stale_since)
ON CONFLICT (tenant) DO UPDATE
SET read_at = excluded.read_at,
    stale_since = excluded.stale_since,
    alerted_at = NULL,
    alerts = 0,
    admin_notified_at = NULL
WHERE s.read_at IS DISTINCT FROM excluded.read_at

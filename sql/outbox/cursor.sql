-- The tenant's webhook cursor (migration 025), made on first use.
INSERT INTO sync.event_cursor (tenant) VALUES (:tenant) ON CONFLICT (tenant) DO NOTHING;
SELECT delivered_id, attempts, next_attempt_at, last_error
FROM sync.event_cursor
WHERE tenant = :tenant;

-- Event :event_id is given up on after :attempts attempts: kept here, visible, and passed.
INSERT INTO sync.event_dead_letters (tenant, event_id, attempts, last_error)
VALUES (:tenant, :event_id, :attempts, :error)
ON CONFLICT (tenant, event_id) DO UPDATE
SET attempts = EXCLUDED.attempts, last_error = EXCLUDED.last_error, dead_at = now()

-- The next event's delivery failed: retried after :delay_seconds (backoff).
UPDATE sync.event_cursor
SET attempts = :attempts, last_error = :error, updated_at = now(),
    next_attempt_at = now() + make_interval(secs => :delay_seconds)
WHERE tenant = :tenant

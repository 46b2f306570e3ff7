-- Event :event_id reached the webhook (or was dead-lettered): the cursor passes it.
UPDATE sync.event_cursor
SET delivered_id = :event_id, attempts = 0, next_attempt_at = NULL, last_error = NULL,
    updated_at = now()
WHERE tenant = :tenant AND delivered_id < :event_id

-- Retention (event_retention_days): events older than the retention go, but with a webhook
-- only those the cursor passed and that are not dead letters: nothing is deleted before it
-- was delivered.
DELETE FROM sync.events e
WHERE e.tenant = :tenant
  AND e.created_at < now() - make_interval(days => :days)
  AND (NOT CAST(:webhook AS boolean)
       OR (e.id <= coalesce((SELECT c.delivered_id FROM sync.event_cursor c
                             WHERE c.tenant = :tenant), 0)
           AND NOT EXISTS (SELECT 1 FROM sync.event_dead_letters d
                           WHERE d.tenant = :tenant AND d.event_id = e.id)))

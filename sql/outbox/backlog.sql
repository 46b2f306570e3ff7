-- What waits for the tenant's webhook, and what was given up on.
SELECT
    (SELECT count(*) FROM sync.events e
     WHERE e.tenant = :tenant
       AND e.id > coalesce((SELECT delivered_id FROM sync.event_cursor c
                            WHERE c.tenant = :tenant), 0)) AS pending,
    (SELECT count(*) FROM sync.event_dead_letters d WHERE d.tenant = :tenant) AS dead,
    (SELECT min(d.event_id) FROM sync.event_dead_letters d WHERE d.tenant = :tenant)
        AS first_dead

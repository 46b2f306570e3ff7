-- The events one run wrote, per type.
SELECT type, count(*) AS n
FROM sync.events
WHERE tenant = :tenant AND run_id = :run_id
GROUP BY type

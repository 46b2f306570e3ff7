-- Counts per entity_action of one run's diff.
SELECT entity || '_' || action AS name, count(*) AS value
FROM sync.diffs
WHERE tenant = :tenant AND run_id = :run_id
GROUP BY entity, action

-- One run's applied changes counted per entity and action (what an undo would revert).
SELECT entity, action, count(*) AS n
FROM sync.changes
WHERE tenant = :tenant AND run_id = :run_id
GROUP BY entity, action
ORDER BY entity, action

-- A run's planned user deactivations (read through the diffs primary key: run_id, entity).
SELECT count(*)
FROM sync.diffs
WHERE tenant = :tenant AND run_id = :run_id AND entity = 'user' AND action = 'deactivate'

SELECT entity, action, count(*) AS n
FROM sync.diffs
WHERE run_id = :run_id
GROUP BY entity, action

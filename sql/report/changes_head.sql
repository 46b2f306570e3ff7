-- The first changes of one run, in the report's order, for the inline tables.
SELECT entity, action, key, label, before, after
FROM sync.diffs
WHERE tenant = :tenant AND run_id = :run_id
ORDER BY entity, action, label NULLS LAST, key
LIMIT :limit

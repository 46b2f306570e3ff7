-- Every change of one run, in a stable order, for the report and its CSV.
SELECT entity, action, key, label, before, after
FROM sync.diffs
WHERE tenant = :tenant AND run_id = :run_id
ORDER BY entity, action, label NULLS LAST, key

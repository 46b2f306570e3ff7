-- Every change of one run (optionally all but memberships), in a stable order, for the CSV.
SELECT entity, action, key, label, before, after
FROM sync.diffs
WHERE tenant = :tenant AND run_id = :run_id
  AND (CAST(:memberships AS boolean) OR entity <> 'membership')
ORDER BY entity, action, label NULLS LAST, key

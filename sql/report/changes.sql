-- A run's changes (optionally all but memberships) in a stable order: the first :limit for the
-- report's tables, all of them (limit NULL) for its CSV.
SELECT entity, action, key, label, before, after
FROM sync.diffs
WHERE tenant = :tenant AND run_id = :run_id
  AND (CAST(:memberships AS boolean) OR entity <> 'membership')
ORDER BY entity, action, label NULLS LAST, key
LIMIT CAST(:limit AS bigint)

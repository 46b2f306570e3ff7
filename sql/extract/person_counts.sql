-- `sync --user`, after the person is staged: the extraction's row counts follow the staged
-- rows (the staging checks compare the two), and its time stays the last complete read's
-- (staleness and the deactivation gate's reads count complete reads only).
UPDATE staging.extractions e
SET rows = s.n
FROM sync.staged_rows s
WHERE e.tenant = :t AND s.tenant = :t AND s.tbl = e.entity
  AND e.entity IN ('users', 'user_licences', 'group_members', 'user_managers')

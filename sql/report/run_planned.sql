-- One run of a tenant with how many planned changes sync.diffs still holds for it.
SELECT r.id, r.dry_run, r.status, r.planned,
       (SELECT count(*) FROM sync.diffs d WHERE d.tenant = :tenant AND d.run_id = r.id) AS rows
FROM sync.runs r
WHERE r.tenant = :tenant AND r.id = :run_id

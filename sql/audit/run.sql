-- One run of a tenant, with how many changes it applied and the run that undid it, if any.
SELECT r.id, r.status, r.dry_run, r.undo_of, r.started_at, r.finished_at,
       (SELECT count(*) FROM sync.changes c WHERE c.tenant = :tenant AND c.run_id = r.id)
           AS changes,
       (SELECT min(u.id) FROM sync.runs u
        WHERE u.tenant = :tenant AND u.undo_of = r.id AND u.status = 'success'
          AND NOT EXISTS (
              SELECT 1 FROM sync.runs z
              WHERE z.tenant = :tenant AND z.undo_of = u.id AND z.status = 'success'))
           AS undone_by
FROM sync.runs r
WHERE r.tenant = :tenant AND r.id = :run_id

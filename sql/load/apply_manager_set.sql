-- Direct managers, after this run's users exist; a null manager_external_id clears it.
UPDATE app.users u
SET manager_id = m.id, updated_at = now()
FROM sync.diffs d
LEFT JOIN app.users m
  ON m.tenant = :tenant AND m.external_id = d.after ->> 'manager_external_id'
WHERE d.tenant = :tenant AND d.run_id = :run_id AND d.entity = 'manager' AND d.action = 'set'
  AND u.tenant = :tenant AND u.external_id = d.key

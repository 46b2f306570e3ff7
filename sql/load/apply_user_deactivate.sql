-- Users that left the snapshot: deactivated, never deleted (their history stays).
UPDATE app.users u
SET is_active = false, deactivated_at = now(), updated_at = now()
FROM sync.diffs d
WHERE d.tenant = :tenant AND d.run_id = :run_id AND d.entity = 'user' AND d.action = 'deactivate'
  AND u.tenant = :tenant AND u.id = d.app_id AND u.is_active AND u.source = 'm365'

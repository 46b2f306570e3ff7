-- Groups the sync created that left scope or vanished: marked removed, never deleted.
UPDATE app.groups g
SET removed_at = now(), updated_at = now()
FROM sync.diffs d
WHERE d.tenant = :tenant AND d.run_id = :run_id AND d.entity = 'group' AND d.action = 'remove'
  AND g.tenant = :tenant AND g.id = d.app_id AND g.source = 'm365' AND g.removed_at IS NULL

-- restore | rename (the action parameter) of groups the sync owns; app-native groups are never touched.
UPDATE app.groups g
SET name = coalesce(d.after ->> 'name', g.name),
    removed_at = CASE WHEN d.after ? 'removed_at' THEN NULL ELSE g.removed_at END,
    updated_at = now()
FROM sync.diffs d
WHERE d.tenant = :tenant AND d.run_id = :run_id AND d.entity = 'group' AND d.action = :action
  AND g.tenant = :tenant AND g.id = d.app_id AND g.source = 'm365'

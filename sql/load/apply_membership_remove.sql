-- Sync-owned memberships no longer wanted; rows a person added (source manual) stay.
DELETE FROM app.group_members gm
USING sync.diffs d
WHERE d.tenant = :tenant AND d.run_id = :run_id AND d.entity = 'membership'
  AND d.action = 'remove'
  AND gm.tenant = :tenant AND gm.group_id = d.group_app_id AND gm.user_id = d.user_app_id
  AND gm.source = 'm365'

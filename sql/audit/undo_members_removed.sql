-- Memberships run :undo_of removed: added again with the source they had, each recorded.
WITH back AS (
    INSERT INTO app.group_members (tenant, group_id, user_id, source)
    SELECT :tenant, c.group_id, c.user_id, coalesce(c.before ->> 'source', 'm365')
    FROM sync.changes c
    WHERE c.tenant = :tenant AND c.run_id = :undo_of AND c.entity = 'membership'
      AND c.action = 'remove'
    ON CONFLICT (tenant, group_id, user_id) DO NOTHING
    RETURNING group_id, user_id, source
)
INSERT INTO sync.changes (
    tenant, run_id, entity, action, key, label, user_id, group_id, before, after)
SELECT :tenant, :run_id, 'membership', 'add', c.key, c.label, b.user_id, b.group_id, NULL,
       (c.before - 'source') || jsonb_build_object('source', b.source)
FROM back b
JOIN sync.changes c
  ON c.tenant = :tenant AND c.run_id = :undo_of AND c.entity = 'membership'
 AND c.action = 'remove' AND c.group_id = b.group_id AND c.user_id = b.user_id

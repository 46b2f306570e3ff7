-- Memberships run :undo_of added: removed again (the sync's rows only), each recorded.
WITH gone AS (
    DELETE FROM app.group_members gm
    USING sync.changes c
    WHERE c.tenant = :tenant AND c.run_id = :undo_of AND c.entity = 'membership'
      AND c.action = 'add'
      AND gm.tenant = :tenant AND gm.group_id = c.group_id AND gm.user_id = c.user_id
      AND gm.source = 'm365'
    RETURNING gm.group_id, gm.user_id, gm.source, c.key, c.label, c.after
)
INSERT INTO sync.changes (
    tenant, run_id, entity, action, key, label, user_id, group_id, before, after)
SELECT :tenant, :run_id, 'membership', 'remove', key, label, user_id, group_id,
       coalesce(after, '{}') || jsonb_build_object('source', source), NULL
FROM gone

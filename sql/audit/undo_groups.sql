-- Groups back to their name and removed_at before run :undo_of (created ones removed, never
-- deleted), each change recorded.
WITH upd AS (
    UPDATE app.groups g
    SET name = CASE WHEN x.target ? 'name' THEN x.target ->> 'name' ELSE g.name END,
        removed_at = CASE WHEN x.target ? 'removed_at'
                          THEN CAST(x.target ->> 'removed_at' AS timestamptz)
                          ELSE g.removed_at END,
        updated_at = now()
    FROM sp_undo_groups x
    WHERE g.tenant = :tenant AND g.id = x.group_id
    RETURNING g.id, to_jsonb(g) AS row
)
INSERT INTO sync.changes (tenant, run_id, entity, action, key, label, group_id, before, after)
SELECT :tenant, :run_id, 'group', CASE WHEN x.created THEN 'remove' ELSE 'revert' END,
       coalesce(upd.row ->> 'external_id', 'app:' || upd.id), upd.row ->> 'name', upd.id,
       x.cur,
       (SELECT jsonb_object_agg(k, upd.row -> k) FROM jsonb_object_keys(x.target) k)
FROM upd
JOIN sp_undo_groups x ON x.group_id = upd.id

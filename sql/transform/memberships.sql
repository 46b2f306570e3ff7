-- Flattened memberships: every included user that is a direct member of an included group or
-- of any group nested below it (imported or not), through sp_closure (cycle-safe). Reads the
-- analysed temp tables of the earlier steps, not the freshly written snapshot tables.
DELETE FROM sync.snapshot_memberships WHERE tenant = :tenant;
INSERT INTO sync.snapshot_memberships (tenant, group_graph_id, user_graph_id)
SELECT DISTINCT :tenant, g.id, gm.member_id
FROM sp_groups g
JOIN sp_closure c ON c.ancestor = g.id
JOIN staging.group_members gm
  ON gm.tenant = :tenant AND gm.group_id = c.descendant AND gm.member_type = 'user'
JOIN sp_users u ON u.id = gm.member_id AND u.included
WHERE g.reason IS NULL
ORDER BY 2, 3  -- in key order: appending to the primary key's btree is far cheaper than random

-- Flattened memberships: every included user that is a direct member of an included group or
-- of any group nested below it (imported or not), through sp_closure (cycle-safe).
DELETE FROM sync.snapshot_memberships WHERE tenant = :tenant;
INSERT INTO sync.snapshot_memberships (tenant, group_graph_id, user_graph_id)
SELECT DISTINCT :tenant, g.graph_id, gm.member_id
FROM sync.snapshot_groups g
JOIN sp_closure c ON c.ancestor = g.graph_id
JOIN staging.group_members gm
  ON gm.tenant = :tenant AND gm.group_id = c.descendant AND gm.member_type = 'user'
JOIN sync.snapshot_users u
  ON u.tenant = :tenant AND u.graph_id = gm.member_id AND u.included
WHERE g.tenant = :tenant AND g.included

-- The incremental form of memberships.sql: the flattened memberships of the groups in sp_ga
-- and of the users in sp_recompute (incremental.sql) computed again, the same rule, and only
-- the difference written within that domain. Every other pair has the same group inclusion,
-- the same members below the group and the same user inclusion as when it was last built.
-- users.sql has written the snapshot's users already: a member's inclusion is read from there
-- (sp_users holds only the users around the change set).
DROP TABLE IF EXISTS pg_temp.sp_memberships;
CREATE TEMP TABLE sp_memberships ON COMMIT DROP AS
SELECT DISTINCT x.group_id, x.user_id
FROM (
    -- groups in sp_ga: direct members
    SELECT g.id AS group_id, gm.member_id AS user_id
    FROM sp_ga a
    JOIN sp_groups g ON g.id = a.id AND g.reason IS NULL
    JOIN staging.group_members gm
      ON gm.tenant = :tenant AND gm.group_id = g.id AND gm.member_type = 'user'
    JOIN sync.snapshot_users u
      ON u.tenant = :tenant AND u.graph_id = gm.member_id AND u.included
    UNION ALL
    -- groups in sp_ga: members through nested groups
    SELECT c.ancestor, gm.member_id
    FROM sp_ga a
    JOIN sp_groups g ON g.id = a.id AND g.reason IS NULL
    JOIN sp_closure c ON c.ancestor = g.id
    JOIN staging.group_members gm
      ON gm.tenant = :tenant AND gm.group_id = c.descendant AND gm.member_type = 'user'
    JOIN sync.snapshot_users u
      ON u.tenant = :tenant AND u.graph_id = gm.member_id AND u.included
    UNION ALL
    -- users in sp_recompute: their direct groups
    SELECT gm.group_id, gm.member_id
    FROM sp_recompute r
    JOIN sp_users u ON u.id = r.id AND u.included
    JOIN staging.group_members gm
      ON gm.tenant = :tenant AND gm.member_id = r.id AND gm.member_type = 'user'
    JOIN sp_groups g ON g.id = gm.group_id AND g.reason IS NULL
    UNION ALL
    -- users in sp_recompute: every group above their direct groups
    SELECT c.ancestor, gm.member_id
    FROM sp_recompute r
    JOIN sp_users u ON u.id = r.id AND u.included
    JOIN staging.group_members gm
      ON gm.tenant = :tenant AND gm.member_id = r.id AND gm.member_type = 'user'
    JOIN sp_closure c ON c.descendant = gm.group_id
    JOIN sp_groups g ON g.id = c.ancestor AND g.reason IS NULL
) x;
ANALYZE sp_memberships;
DELETE FROM sync.snapshot_memberships m
WHERE m.tenant = :tenant
  AND (m.group_graph_id IN (SELECT a.id FROM sp_ga a)
       OR m.user_graph_id IN (SELECT r.id FROM sp_recompute r))
  AND NOT EXISTS (
      SELECT 1 FROM sp_memberships n
      WHERE n.group_id = m.group_graph_id AND n.user_id = m.user_graph_id);
INSERT INTO sync.snapshot_memberships (tenant, group_graph_id, user_graph_id)
SELECT :tenant, n.group_id, n.user_id
FROM sp_memberships n
WHERE NOT EXISTS (
    SELECT 1 FROM sync.snapshot_memberships m
    WHERE m.tenant = :tenant AND m.group_graph_id = n.group_id AND m.user_graph_id = n.user_id)
ORDER BY 2, 3;
RESET enable_nestloop

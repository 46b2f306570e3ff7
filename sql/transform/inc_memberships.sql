-- The incremental form of memberships.sql: the flattened memberships of the groups in sp_ga
-- and of the users in sp_recompute (incremental.sql) computed again, the same rule, and only
-- the difference written within that domain. Every other pair has the same group inclusion,
-- the same members below the group and the same user inclusion as when it was last built.
-- users.sql has written the snapshot's users already: a member's inclusion is read from there
-- (sp_users holds only the users around the change set).
-- The groups whose inclusion changed join those recomputed whole (groups.sql).
INSERT INTO sp_ga (id) SELECT f.id FROM sp_groups_flipped f ON CONFLICT DO NOTHING;
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
-- The pairs the snapshot holds within that domain now, by index alone (the user's index
-- carries the group id, migration 017; the primary key leads with the group).
DROP TABLE IF EXISTS pg_temp.sp_old_memberships;
CREATE TEMP TABLE sp_old_memberships ON COMMIT DROP AS
SELECT m.group_graph_id AS group_id, m.user_graph_id AS user_id
FROM sp_recompute r
JOIN sync.snapshot_memberships m ON m.tenant = :tenant AND m.user_graph_id = r.id
UNION
SELECT m.group_graph_id, m.user_graph_id
FROM sp_ga a
JOIN sync.snapshot_memberships m ON m.tenant = :tenant AND m.group_graph_id = a.id;
ANALYZE sp_old_memberships;
DROP TABLE IF EXISTS pg_temp.sp_gone_memberships;
CREATE TEMP TABLE sp_gone_memberships ON COMMIT DROP AS
SELECT o.group_id, o.user_id FROM sp_old_memberships o
EXCEPT
SELECT n.group_id, n.user_id FROM sp_memberships n;
DROP TABLE IF EXISTS pg_temp.sp_new_memberships;
CREATE TEMP TABLE sp_new_memberships ON COMMIT DROP AS
SELECT n.group_id, n.user_id FROM sp_memberships n
EXCEPT
SELECT o.group_id, o.user_id FROM sp_old_memberships o;
ANALYZE sp_gone_memberships;
DELETE FROM sync.snapshot_memberships m
USING sp_gone_memberships gone
WHERE m.tenant = :tenant AND m.group_graph_id = gone.group_id AND m.user_graph_id = gone.user_id;
INSERT INTO sync.snapshot_memberships (tenant, group_graph_id, user_graph_id)
SELECT :tenant, x.group_id, x.user_id
FROM sp_new_memberships x
ORDER BY 2, 3;
RESET random_page_cost;
RESET enable_nestloop

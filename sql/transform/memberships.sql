-- Flattened memberships: every included user that is a direct member of an included group or
-- of any group nested below it (imported or not), cycle-safe through sp_closure. Reads the
-- analysed temp tables of the earlier steps, not the freshly written snapshot tables.
-- The new set is computed into sp_memberships, then only the difference is written: a
-- scheduled sync usually changes a handful of 1M+ rows, and deleting and re-inserting them all
-- (heap, primary key and WAL) was most of the transform's time.
DROP TABLE IF EXISTS pg_temp.sp_memberships;
CREATE TEMP TABLE sp_memberships ON COMMIT DROP AS
-- A group's own direct members: no duplicates (staging's primary key), so no DISTINCT.
SELECT g.id AS group_id, gm.member_id AS user_id
FROM sp_groups g
JOIN staging.group_members gm
  ON gm.tenant = :tenant AND gm.group_id = g.id AND gm.member_type = 'user'
JOIN sp_users u ON u.id = gm.member_id AND u.included
WHERE g.reason IS NULL
UNION ALL
-- Members through nested groups (few groups nest), deduplicated among the nesting paths and
-- against the direct members above.
SELECT n.group_id, n.user_id
FROM (
    SELECT DISTINCT c.ancestor AS group_id, gm.member_id AS user_id
    FROM sp_groups g
    JOIN sp_closure c ON c.ancestor = g.id
    JOIN staging.group_members gm
      ON gm.tenant = :tenant AND gm.group_id = c.descendant AND gm.member_type = 'user'
    JOIN sp_users u ON u.id = gm.member_id AND u.included
    WHERE g.reason IS NULL
) n
WHERE NOT EXISTS (
    SELECT 1 FROM staging.group_members d
    WHERE d.tenant = :tenant AND d.group_id = n.group_id AND d.member_id = n.user_id
      AND d.member_type = 'user');
ANALYZE sp_memberships;
DELETE FROM sync.snapshot_memberships m
WHERE m.tenant = :tenant
  AND NOT EXISTS (
      SELECT 1 FROM sp_memberships n
      WHERE n.group_id = m.group_graph_id AND n.user_id = m.user_graph_id);
INSERT INTO sync.snapshot_memberships (tenant, group_graph_id, user_graph_id)
SELECT :tenant, n.group_id, n.user_id
FROM sp_memberships n
WHERE NOT EXISTS (
    SELECT 1 FROM sync.snapshot_memberships m
    WHERE m.tenant = :tenant AND m.group_graph_id = n.group_id AND m.user_graph_id = n.user_id)
-- In key order: appending to the primary key's btree is far cheaper than random inserts. No ON
-- CONFLICT: NOT EXISTS already leaves out the rows there (db.tenant_lock keeps a second
-- transform of the tenant out), and the speculative insertion ON CONFLICT needs costs an
-- extra WAL record and page change per row, about a quarter of this statement at 1M rows.
ORDER BY 2, 3;
-- Back to the planner's default for whatever the caller runs next in this transaction.
RESET enable_nestloop

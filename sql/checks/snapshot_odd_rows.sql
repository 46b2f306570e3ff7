-- Graph rows that are odd but legal, which the transform left out or repaired instead of
-- stopping the sync (docs/checks.md): one row each, with the reason and a detail to show.
--   duplicate_email, no_email   users left out for their address
--   manager_cycle               imported users whose manager link was cut to break a cycle
--   blank_group_name            imported groups named by their Graph id (blank displayName)
--   nesting_cycle               groups nested in a cycle (flattened like any nesting)
WITH RECURSIVE edges AS (
    SELECT group_id AS parent, member_id AS child
    FROM staging.group_members
    WHERE tenant = :tenant AND member_type = 'group'
), reach (start, at) AS (
    SELECT e.parent, e.child FROM edges e
    UNION
    SELECT r.start, e.child FROM reach r JOIN edges e ON e.parent = r.at
)
SELECT 'user' AS kind, s.graph_id, s.reason, s.email AS detail
FROM sync.snapshot_users s
WHERE s.tenant = :tenant AND NOT s.included AND s.reason IN ('duplicate_email', 'no_email')
UNION ALL
SELECT 'user', s.graph_id, 'manager_cycle', substr(s.manager_note, 15)
FROM sync.snapshot_users s
WHERE s.tenant = :tenant AND s.included AND s.manager_note LIKE 'manager\_cycle\:%'
UNION ALL
SELECT 'group', g.graph_id, 'blank_group_name', g.graph_id
FROM sync.snapshot_groups g
JOIN staging.groups sg ON sg.tenant = :tenant AND sg.id = g.graph_id
WHERE g.tenant = :tenant AND g.included AND coalesce(sync.trim_space(sg.display_name), '') = ''
UNION ALL
SELECT 'group', g.graph_id, 'nesting_cycle', g.name
FROM sync.snapshot_groups g
WHERE g.tenant = :tenant
  AND EXISTS (SELECT 1 FROM reach r WHERE r.start = g.graph_id AND r.at = g.graph_id)
ORDER BY 3, 1, 2

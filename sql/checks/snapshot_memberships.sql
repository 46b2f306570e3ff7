-- Flattened memberships summed up per group (a frame the size of the group list): whether the
-- group is an imported snapshot group, and how many members are not imported snapshot users.
-- Samples are unordered, so the grouping needs no per-group sort.
SELECT
    m.group_graph_id,
    bool_or(g.graph_id IS NOT NULL) AS group_imported,
    count(*) AS members,
    count(*) FILTER (WHERE u.graph_id IS NULL) AS unknown_users,
    array_to_string(
        (array_agg(m.user_graph_id) FILTER (WHERE u.graph_id IS NULL))[1:3], ', '
    ) AS unknown_sample
FROM sync.snapshot_memberships m
LEFT JOIN sync.snapshot_groups g
  ON g.tenant = :tenant AND g.graph_id = m.group_graph_id AND g.included
LEFT JOIN sync.snapshot_users u
  ON u.tenant = :tenant AND u.graph_id = m.user_graph_id AND u.included
WHERE m.tenant = :tenant
GROUP BY m.group_graph_id

-- Flattened memberships summed up per group (a frame the size of the group list): whether the
-- group is an imported snapshot group, and how many members are not imported snapshot users.
-- The per-group state is a few scalars (min/max as the sample instead of array_agg), so the
-- aggregate over ~1.2 M rows stays hashed in memory.
SELECT
    m.group_graph_id,
    bool_or(g.graph_id IS NOT NULL) AS group_imported,
    count(*) AS members,
    count(*) FILTER (WHERE u.graph_id IS NULL) AS unknown_users,
    concat_ws(
        ', ',
        min(m.user_graph_id) FILTER (WHERE u.graph_id IS NULL),
        nullif(max(m.user_graph_id) FILTER (WHERE u.graph_id IS NULL),
               min(m.user_graph_id) FILTER (WHERE u.graph_id IS NULL))
    ) AS unknown_sample
FROM sync.snapshot_memberships m
LEFT JOIN sync.snapshot_groups g
  ON g.tenant = :tenant AND g.graph_id = m.group_graph_id AND g.included
LEFT JOIN sync.snapshot_users u
  ON u.tenant = :tenant AND u.graph_id = m.user_graph_id AND u.included
WHERE m.tenant = :tenant
GROUP BY m.group_graph_id

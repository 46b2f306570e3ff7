-- The imported groups a user lands in (flattened), with the app group a mapped one lands in.
SELECT g.graph_id, g.name, g.group_kind, g.mapped_to
FROM sync.snapshot_memberships m
JOIN sync.snapshot_groups g ON g.tenant = :tenant AND g.graph_id = m.group_graph_id
WHERE m.tenant = :tenant AND m.user_graph_id = :user_id
ORDER BY coalesce(g.mapped_to, g.name), g.graph_id

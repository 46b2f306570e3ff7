-- Flattened memberships summed up per group (a frame the size of the group list): whether the
-- group is an imported snapshot group, and how many of its members are not imported snapshot
-- users. Nothing here is done once per membership row except reading an index in order:
-- the groups come by skipping through the primary key (one descent per group), the members
-- once each from snapshot_memberships_user_group (~100k of 1.2 M rows), and only the members that
-- are not imported users are joined back to their memberships. At 100k users this is
-- ~0.2 CPU-seconds where hashing every membership was ~0.7.
-- Daily (:changed_only, checks/scope.py): the members looked up are only the users whose
-- snapshot rows changed since the last apply (sync.diff_dirty kind 'user', migration 015: a
-- membership row written records its user there too); every group is still checked.
WITH RECURSIVE grouped AS (
    (SELECT group_graph_id
     FROM sync.snapshot_memberships
     WHERE tenant = :tenant
     ORDER BY group_graph_id
     LIMIT 1)
    UNION ALL
    SELECT (SELECT m.group_graph_id
            FROM sync.snapshot_memberships m
            WHERE m.tenant = :tenant AND m.group_graph_id > g.group_graph_id
            ORDER BY m.group_graph_id
            LIMIT 1)
    FROM grouped g
    WHERE g.group_graph_id IS NOT NULL
), members AS (
    SELECT DISTINCT user_graph_id
    FROM sync.snapshot_memberships
    WHERE tenant = :tenant AND NOT CAST(:changed_only AS boolean)
    UNION ALL
    SELECT d.id
    FROM sync.diff_dirty d
    WHERE CAST(:changed_only AS boolean) AND d.tenant = :tenant AND d.kind = 'user'
), not_imported AS (
    SELECT d.user_graph_id
    FROM members d
    WHERE NOT EXISTS (
        SELECT 1 FROM sync.snapshot_users u
        WHERE u.tenant = :tenant AND u.graph_id = d.user_graph_id AND u.included)
), unknown AS (
    SELECT
        m.group_graph_id,
        count(*) AS unknown_users,
        min(m.user_graph_id) AS first_unknown,
        max(m.user_graph_id) AS last_unknown
    FROM not_imported n
    JOIN sync.snapshot_memberships m
      ON m.tenant = :tenant AND m.user_graph_id = n.user_graph_id
    GROUP BY m.group_graph_id
)
SELECT
    g.group_graph_id,
    EXISTS (
        SELECT 1 FROM sync.snapshot_groups s
        WHERE s.tenant = :tenant AND s.graph_id = g.group_graph_id AND s.included
    ) AS group_imported,
    coalesce(k.unknown_users, 0) AS unknown_users,
    concat_ws(', ', k.first_unknown, nullif(k.last_unknown, k.first_unknown)) AS unknown_sample
FROM grouped g
LEFT JOIN unknown k ON k.group_graph_id = g.group_graph_id
WHERE g.group_graph_id IS NOT NULL

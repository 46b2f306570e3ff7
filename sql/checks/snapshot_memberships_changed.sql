-- snapshot_memberships.sql for a daily check (checks/scope.py): every group with memberships
-- (skipping through the primary key, one descent per group) and whether it is imported, and
-- the members that are not imported users among the users whose snapshot rows changed since
-- the last apply (sync.diff_dirty kind 'user', migration 015: a membership row written
-- records its user there too).
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
), not_imported AS (
    SELECT d.id AS user_graph_id
    FROM sync.diff_dirty d
    WHERE d.tenant = :tenant AND d.kind = 'user'
      AND NOT EXISTS (
        SELECT 1 FROM sync.snapshot_users u
        WHERE u.tenant = :tenant AND u.graph_id = d.id AND u.included)
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

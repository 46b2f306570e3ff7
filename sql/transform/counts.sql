-- The snapshot's counts for metadata: (name, value) rows, but the memberships' (counted apart:
-- transform/memberships_count, or counted on by the incremental path). One scan of the users
-- and one of the groups (each CTE is computed once).
WITH u AS (
    SELECT included, reason, count(*) AS n, count(manager_graph_id) AS managers,
           count(*) FILTER (WHERE starts_with(manager_note, 'manager_cycle:')) AS cut
    FROM sync.snapshot_users WHERE tenant = :tenant GROUP BY included, reason
), g AS (
    SELECT included, reason, count(*) AS n, count(mapped_to) AS mapped
    FROM sync.snapshot_groups WHERE tenant = :tenant GROUP BY included, reason
)
SELECT 'users_included' AS name, coalesce(sum(n) FILTER (WHERE included), 0) AS value FROM u
UNION ALL
SELECT 'users_excluded', coalesce(sum(n) FILTER (WHERE NOT included), 0) FROM u
UNION ALL
SELECT 'managers_set', coalesce(sum(managers), 0) FROM u
UNION ALL
SELECT 'managers_cut_cycle', coalesce(sum(cut), 0) FROM u
UNION ALL
SELECT 'excluded_' || reason, n FROM u WHERE NOT included
UNION ALL
SELECT 'groups_included', coalesce(sum(n) FILTER (WHERE included), 0) FROM g
UNION ALL
SELECT 'groups_excluded', coalesce(sum(n) FILTER (WHERE NOT included), 0) FROM g
UNION ALL
SELECT 'groups_mapped', coalesce(sum(mapped), 0) FROM g
UNION ALL
SELECT 'groups_excluded_' || reason, n FROM g WHERE NOT included

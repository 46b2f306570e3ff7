-- The snapshot's counts for metadata: (name, value) rows.
SELECT 'users_included' AS name, count(*) FILTER (WHERE included) AS value
  FROM sync.snapshot_users WHERE tenant = :tenant
UNION ALL
SELECT 'users_excluded', count(*) FILTER (WHERE NOT included)
  FROM sync.snapshot_users WHERE tenant = :tenant
UNION ALL
SELECT 'managers_set', count(manager_graph_id)
  FROM sync.snapshot_users WHERE tenant = :tenant
UNION ALL
SELECT 'managers_cut_cycle', count(*) FILTER (WHERE manager_note LIKE 'manager\_cycle\:%')
  FROM sync.snapshot_users WHERE tenant = :tenant
UNION ALL
SELECT 'excluded_' || reason, count(*)
  FROM sync.snapshot_users WHERE tenant = :tenant AND NOT included GROUP BY reason
UNION ALL
SELECT 'groups_included', count(*) FILTER (WHERE included)
  FROM sync.snapshot_groups WHERE tenant = :tenant
UNION ALL
SELECT 'groups_excluded', count(*) FILTER (WHERE NOT included)
  FROM sync.snapshot_groups WHERE tenant = :tenant
UNION ALL
SELECT 'groups_mapped', count(mapped_to)
  FROM sync.snapshot_groups WHERE tenant = :tenant
UNION ALL
SELECT 'groups_excluded_' || reason, count(*)
  FROM sync.snapshot_groups WHERE tenant = :tenant AND NOT included GROUP BY reason
UNION ALL
SELECT 'memberships', count(*)
  FROM sync.snapshot_memberships WHERE tenant = :tenant

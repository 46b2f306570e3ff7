-- The first users of a (preview) run's diff with one of :actions, by address: joiners
-- (create, reactivate) or leavers (deactivate), leavers including those the deactivation gate
-- (load/gate.sql) would keep pending for the grace period or hold over the safety limit:
-- `action` is then 'pending' or 'held'. `reason` is why the snapshot leaves a user out (null
-- for a joiner, and for a leaver Graph no longer lists at all).
SELECT x.email, x.action, s.reason
FROM (
    SELECT d.label AS email, d.action, d.key
    FROM sync.diffs d
    WHERE d.tenant = :tenant AND d.run_id = :run_id AND d.entity = 'user'
      AND d.action = ANY(CAST(:actions AS text[]))
    UNION ALL
    SELECT g.label, g.status, g.key
    FROM sync.diff_gate g
    WHERE g.tenant = :tenant AND g.run_id = :run_id AND g.kind = 'deactivate'
      AND g.status IN ('pending', 'held') AND 'deactivate' = ANY(CAST(:actions AS text[]))
) x
LEFT JOIN sync.snapshot_users s ON s.tenant = :tenant AND s.graph_id = x.key
ORDER BY lower(x.email), x.key
LIMIT :limit

-- The first users of a (preview) run's diff with one of :actions, by address: joiners
-- (create, reactivate) or leavers (deactivate). `reason` is why the snapshot leaves a user
-- out (null for a joiner, and for a leaver Graph no longer lists at all).
SELECT d.label AS email, d.action, s.reason
FROM sync.diffs d
LEFT JOIN sync.snapshot_users s ON s.tenant = :tenant AND s.graph_id = d.key
WHERE d.tenant = :tenant AND d.run_id = :run_id AND d.entity = 'user'
  AND d.action = ANY(CAST(:actions AS text[]))
ORDER BY lower(d.label), d.key
LIMIT :limit

-- One run's withheld changes (sync.diff_gate), as `held` shows them (load/withheld.sql), for
-- the report of that run: a test sync remembers nothing, so its report reads its own rows.
SELECT g.kind, g.key, coalesce(g.label, g.key) AS label, g.status,
       coalesce(g.reason, '') AS reason, g.since, g.reads, g.due_at,
       coalesce(w.held_since, CASE WHEN g.status IN ('held', 'app_decision') THEN now() END)
           AS held_since,
       dc.decision, dc.decided_by, u.email, ag.name AS "group"
FROM sync.diff_gate g
LEFT JOIN sync.withheld w ON w.tenant = g.tenant AND w.kind = g.kind AND w.key = g.key
LEFT JOIN sync.decisions dc ON dc.tenant = g.tenant AND dc.kind = g.kind AND dc.key = g.key
LEFT JOIN app.users u ON u.tenant = g.tenant AND u.id = g.user_app_id
LEFT JOIN app.groups ag ON ag.tenant = g.tenant AND ag.id = g.group_app_id
WHERE g.tenant = :tenant AND g.run_id = :run_id AND g.status = ANY (CAST(:statuses AS text[]))
ORDER BY g.kind, g.status, g.label
LIMIT :limit

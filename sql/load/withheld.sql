-- The changes the tenant's last apply withheld, with any decision on them, oldest first.
SELECT w.kind, w.key, coalesce(w.label, w.key) AS label, w.status, coalesce(w.reason, '') AS reason,
       w.since, w.reads,
       CASE WHEN w.kind = 'deactivate' THEN g.due_at END AS due_at,
       w.held_since, dc.decision, dc.decided_by, u.email, ag.name AS "group"
FROM sync.withheld w
LEFT JOIN sync.decisions dc ON dc.tenant = w.tenant AND dc.kind = w.kind AND dc.key = w.key
LEFT JOIN sync.diff_gate g ON g.run_id = w.updated_run AND g.kind = w.kind AND g.key = w.key
LEFT JOIN app.users u ON u.tenant = w.tenant AND u.id = w.user_id
LEFT JOIN app.groups ag ON ag.tenant = w.tenant AND ag.id = w.group_id
WHERE w.tenant = :tenant AND w.status = ANY (CAST(:statuses AS text[]))
ORDER BY w.since, w.kind, w.label

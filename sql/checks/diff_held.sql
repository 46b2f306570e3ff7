-- A run's changes held for a person's decision (load/gate.py), with how long each has been
-- held (since the apply that first held it; a change held first in this run: 0 hours).
SELECT g.kind, coalesce(g.label, g.key) AS label, g.status,
       CAST(extract(epoch FROM now() - coalesce(w.held_since, now())) / 3600.0 AS float8)
           AS held_hours
FROM sync.diff_gate g
LEFT JOIN sync.withheld w ON w.tenant = g.tenant AND w.kind = g.kind AND w.key = g.key
WHERE g.tenant = :tenant AND g.run_id = :run_id AND g.status IN ('held', 'app_decision')

-- The rows of run :run_id that a later applied change touched again, with those runs. A later
-- run that was itself undone (by an undo not undone in turn) after :run_id cancels out and
-- does not count, nor does that undo.
WITH mine AS (
    SELECT id, entity, label, user_id, group_id
    FROM sync.changes
    WHERE tenant = :tenant AND run_id = :run_id
),
cancelled AS (
    SELECT x.id AS run_id FROM sync.runs x
    JOIN sync.runs y ON y.tenant = :tenant AND y.undo_of = x.id AND y.status = 'success'
    WHERE x.tenant = :tenant AND x.id > :run_id
      AND NOT EXISTS (
          SELECT 1 FROM sync.runs z
          WHERE z.tenant = :tenant AND z.undo_of = y.id AND z.status = 'success')
    UNION ALL
    SELECT y.id FROM sync.runs x
    JOIN sync.runs y ON y.tenant = :tenant AND y.undo_of = x.id AND y.status = 'success'
    WHERE x.tenant = :tenant AND x.id > :run_id
      AND NOT EXISTS (
          SELECT 1 FROM sync.runs z
          WHERE z.tenant = :tenant AND z.undo_of = y.id AND z.status = 'success')
),
later AS (
    SELECT m.entity, m.label, l.run_id
    FROM mine m
    JOIN sync.changes l
      ON l.tenant = :tenant AND l.id > m.id AND l.run_id <> :run_id
     AND l.entity IN ('user', 'manager') AND l.user_id = m.user_id
    WHERE m.entity IN ('user', 'manager')
    UNION ALL
    SELECT m.entity, m.label, l.run_id
    FROM mine m
    JOIN sync.changes l
      ON l.tenant = :tenant AND l.id > m.id AND l.run_id <> :run_id
     AND l.entity = 'group' AND l.group_id = m.group_id
    WHERE m.entity = 'group'
    UNION ALL
    SELECT m.entity, m.label, l.run_id
    FROM mine m
    JOIN sync.changes l
      ON l.tenant = :tenant AND l.id > m.id AND l.run_id <> :run_id
     AND l.entity = 'membership' AND l.group_id = m.group_id AND l.user_id = m.user_id
    WHERE m.entity = 'membership'
)
SELECT entity, label, array_agg(DISTINCT run_id ORDER BY run_id) AS runs
FROM later
WHERE run_id NOT IN (SELECT run_id FROM cancelled)
GROUP BY entity, label
ORDER BY entity, label

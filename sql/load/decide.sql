-- A person's decision on withheld changes (load/gate.py `decide`), as its own run :run_id:
-- sync.decisions set, and one sync.changes row per change (entity 'decision'), whose
-- `before` is the decision it replaced (an undo puts it back). Only changes the last apply
-- withheld can be decided on.
WITH chosen AS (
    SELECT c.kind, c.key
    FROM unnest(CAST(:kinds AS text[]), CAST(:keys AS text[])) AS c (kind, key)
),
w AS (
    SELECT w.kind, w.key, w.label, w.user_id, w.group_id, w.status
    FROM sync.withheld w
    JOIN chosen c ON c.kind = w.kind AND c.key = w.key
    WHERE w.tenant = :tenant
),
prior AS (
    SELECT w.*, dc.decision AS old_decision, dc.decided_by AS old_by, dc.note AS old_note,
           dc.decided_at AS old_at, dc.run_id AS old_run
    FROM w
    LEFT JOIN sync.decisions dc ON dc.tenant = :tenant AND dc.kind = w.kind AND dc.key = w.key
),
up AS (
    INSERT INTO sync.decisions (
        tenant, kind, key, label, user_id, decision, decided_by, decided_at, note, run_id)
    SELECT :tenant, p.kind, p.key, p.label, p.user_id, :decision, :by, now(), :note, :run_id
    FROM prior p
    ON CONFLICT (tenant, kind, key) DO UPDATE
    SET decision = EXCLUDED.decision, decided_by = EXCLUDED.decided_by,
        decided_at = EXCLUDED.decided_at, note = EXCLUDED.note, run_id = EXCLUDED.run_id,
        label = EXCLUDED.label, user_id = EXCLUDED.user_id
    RETURNING kind, key
)
INSERT INTO sync.changes (tenant, run_id, entity, action, key, label, user_id, group_id, before, after)
SELECT :tenant, :run_id, 'decision',
       CASE :decision WHEN 'approved' THEN 'approve' ELSE 'reject' END,
       p.kind || ':' || p.key, p.label, p.user_id, p.group_id,
       jsonb_build_object('kind', p.kind, 'key', p.key, 'decision', p.old_decision,
                          'decided_by', p.old_by, 'note', p.old_note, 'decided_at', p.old_at,
                          'run_id', p.old_run),
       jsonb_build_object('kind', p.kind, 'key', p.key, 'decision', :decision,
                          'decided_by', :by, 'note', :note, 'status', p.status)
FROM prior p
JOIN up ON up.kind = p.kind AND up.key = p.key

-- The gate's state after an apply, in its transaction (load/gate.py): what this run withheld
-- is remembered (the grace period's clock, since when a change is held), and what no longer
-- comes up is forgotten, with the decisions on it (an approved change was applied just now;
-- a rejected one stays while Graph keeps asking for it). Every withheld or decided change is
-- diffed again by the next incremental diff (load/state/scope.sql), so "no longer comes up"
-- is known. After a run of one person (`sync --user`, the person parameter a Graph id), only that
-- person's withheld changes and decisions can be forgotten: nobody else was diffed.
-- Statements end with a semicolon at the end of a line.
INSERT INTO sync.withheld AS w (
    tenant, kind, key, label, user_id, group_id, status, reason, since, reads, last_read_at,
    held_since, updated_run)
SELECT g.tenant, g.kind, g.key, g.label, g.user_app_id, g.group_app_id, g.status, g.reason,
       coalesce(g.since, now()), g.reads, g.read_at,
       CASE WHEN g.status IN ('held', 'app_decision') THEN now() END, :run_id
FROM sync.diff_gate g
WHERE g.tenant = :tenant AND g.run_id = :run_id
  AND g.status IN ('pending', 'held', 'protected', 'rejected', 'with_person', 'app_decision',
                   'address_in_use', 'recheck')
ON CONFLICT (tenant, kind, key) DO UPDATE
SET label = EXCLUDED.label, user_id = EXCLUDED.user_id, group_id = EXCLUDED.group_id,
    status = EXCLUDED.status, reason = EXCLUDED.reason,
    since = CASE WHEN EXCLUDED.kind = 'deactivate' THEN EXCLUDED.since ELSE w.since END,
    reads = EXCLUDED.reads, last_read_at = EXCLUDED.last_read_at,
    -- once held, remembered while the change comes up (a rejection undone is held again)
    held_since = CASE WHEN EXCLUDED.status IN ('held', 'app_decision')
                      THEN coalesce(w.held_since, now()) ELSE w.held_since END,
    notified_at = CASE WHEN EXCLUDED.status IN ('held', 'app_decision')
                       THEN w.notified_at END,
    updated_run = EXCLUDED.updated_run;
-- Hash joins whatever the estimates (see load/gate.sql): this run's gate rows against the
-- tenant's withheld ones, a few thousand each.
SELECT set_config('enable_nestloop', 'off', true);
DELETE FROM sync.withheld w
WHERE w.tenant = :tenant
  AND (CAST(:person AS text) IS NULL OR w.key = CAST(:person AS text)
       OR right(w.key, length(CAST(:person AS text)) + 1) = '/' || CAST(:person AS text))
  AND NOT EXISTS (
      SELECT 1 FROM sync.diff_gate g
      WHERE g.run_id = :run_id AND g.kind = w.kind AND g.key = w.key
        AND g.status IN ('pending', 'held', 'protected', 'rejected', 'with_person',
                         'app_decision', 'address_in_use', 'recheck'));
DELETE FROM sync.decisions dc
WHERE dc.tenant = :tenant
  AND (CAST(:person AS text) IS NULL OR dc.key = CAST(:person AS text)
       OR right(dc.key, length(CAST(:person AS text)) + 1) = '/' || CAST(:person AS text))
  -- a decision taken while this run was under way is for the next one
  AND dc.decided_at < (SELECT r.started_at FROM sync.runs r WHERE r.id = :run_id)
  AND NOT EXISTS (
      SELECT 1 FROM sync.diff_gate g
      WHERE g.run_id = :run_id AND g.kind = dc.kind AND g.key = dc.key
        AND g.status = 'rejected');
SELECT set_config('enable_nestloop', 'on', true)

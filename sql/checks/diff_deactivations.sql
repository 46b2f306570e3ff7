-- A run's planned user deactivations (read through the diffs primary key: run_id, entity),
-- less those a person approved (load/gate.py): the gate keeps the rest within the limit.
SELECT count(*)
FROM sync.diffs d
WHERE d.tenant = :tenant AND d.run_id = :run_id AND d.entity = 'user' AND d.action = 'deactivate'
  AND NOT EXISTS (
      SELECT 1 FROM sync.diff_gate g
      WHERE g.run_id = :run_id AND g.kind = 'deactivate' AND g.key = d.key
        AND g.status = 'approved')

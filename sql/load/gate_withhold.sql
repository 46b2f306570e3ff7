-- What the gate withheld (load/gate.sql) leaves the diff: one statement per kind it withheld
-- something of (gate.py), each on the run's rows of one (entity, action) by the diff's index,
-- hash-joined with the run's gate rows of that kind (nested loops are still off from
-- load/gate.sql). A CASE mapping kinds to (entity, action) kept the index from being used and
-- read sync.diffs whole.
DELETE FROM sync.diffs d
USING sync.diff_gate g
WHERE d.tenant = :tenant AND d.run_id = :run_id AND d.entity = :entity AND d.action = :action
  AND g.run_id = :run_id AND g.kind = :kind AND g.key = d.key
  AND g.status IN ('pending', 'held', 'protected', 'rejected', 'with_person', 'app_decision',
                   'address_in_use')

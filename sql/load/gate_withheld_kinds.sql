-- The kinds of change the gate withheld something of in this run (load/gate_withhold.sql).
SELECT DISTINCT g.kind
FROM sync.diff_gate g
WHERE g.run_id = :run_id
  AND g.status IN ('pending', 'held', 'protected', 'rejected', 'with_person', 'app_decision',
                   'address_in_use')

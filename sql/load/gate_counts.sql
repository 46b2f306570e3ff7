-- A run's gate classification, counted per kind and status (load/gate.py COUNT_KEYS).
SELECT kind, status, count(*) AS n
FROM sync.diff_gate
WHERE tenant = :tenant AND run_id = :run_id
GROUP BY kind, status

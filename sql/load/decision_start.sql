-- A decision's own run (load/gate.py `decide`), so that it is audited and can be undone.
INSERT INTO sync.runs (tenant, dry_run, status)
VALUES (:tenant, false, 'running')
RETURNING id

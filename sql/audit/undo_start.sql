-- The undo's own run, so that it is audited (and can be undone) like a sync.
INSERT INTO sync.runs (tenant, dry_run, status, undo_of)
VALUES (:tenant, false, 'running', :undo_of)
RETURNING id

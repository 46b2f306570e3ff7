-- Record the counts of the diff just written to sync.diffs for this run.
UPDATE sync.runs SET planned = CAST(:planned AS jsonb) WHERE id = :id

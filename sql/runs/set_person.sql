-- The person a run of one person synced (migration 023).
UPDATE sync.runs SET person = :person WHERE id = :run_id

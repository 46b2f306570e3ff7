-- Whether a step of the Dagster run wrote its sync.runs row (after its liveness lock was taken).
SELECT EXISTS (SELECT 1 FROM sync.runs WHERE dagster_run_id = :dagster_run_id)

UPDATE sync.runs
SET status = :status,
    finished_at = now(),
    counts = counts || CAST(:counts AS jsonb),
    error = :error
WHERE id = :id

INSERT INTO staging.extractions (tenant, entity, rows, requests, extracted_at)
VALUES (:tenant, :entity, :rows, :requests, now())
ON CONFLICT (tenant, entity) DO UPDATE
SET rows = excluded.rows, requests = excluded.requests, extracted_at = excluded.extracted_at

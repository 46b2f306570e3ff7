INSERT INTO sync.health_checks (tenant, checked_at, status, findings)
VALUES (:tenant, :at, :status, CAST(:findings AS jsonb))
ON CONFLICT (tenant) DO UPDATE
SET checked_at = EXCLUDED.checked_at, status = EXCLUDED.status, findings = EXCLUDED.findings

-- The check just validated the tenant whole, and passed.
INSERT INTO sync.verifications (tenant, check_name, verified_at)
VALUES (:tenant, :check_name, now())
ON CONFLICT (tenant, check_name) DO UPDATE SET verified_at = excluded.verified_at

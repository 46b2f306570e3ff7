-- One expiry alert per credential, expiry and threshold: a row when this call is the first.
INSERT INTO sync.credential_alerts (tenant, credential, expires_at, days)
VALUES (:tenant, :credential, :expires_at, :days)
ON CONFLICT DO NOTHING
RETURNING days

-- Mailbox types as Graph answered them (parallel arrays: user id, purpose or NULL, status,
-- error code), each with the fingerprint of the user's staged row now. A row that would not
-- change is not rewritten (its trigger would touch the user for nothing).
INSERT INTO staging.user_purposes AS p (tenant, user_id, purpose, status, code, fingerprint)
SELECT :t, a.user_id, a.purpose, a.status, a.code,
       staging.purpose_fingerprint(u.user_principal_name, u.mail, u.proxy_addresses,
                                   u.account_enabled, u.user_type, u.assigned_licenses,
                                   u.display_name)
FROM unnest(CAST(:ids AS text[]), CAST(:purposes AS text[]), CAST(:statuses AS text[]),
            CAST(:codes AS text[])) AS a (user_id, purpose, status, code)
JOIN staging.users u ON u.tenant = :t AND u.id = a.user_id
ON CONFLICT (tenant, user_id) DO UPDATE
SET purpose = EXCLUDED.purpose, status = EXCLUDED.status, code = EXCLUDED.code,
    fingerprint = EXCLUDED.fingerprint, read_at = now()
WHERE (p.purpose, p.status, p.code, p.fingerprint)
      IS DISTINCT FROM (EXCLUDED.purpose, EXCLUDED.status, EXCLUDED.code, EXCLUDED.fingerprint)

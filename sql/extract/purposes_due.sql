-- The staged users whose mailbox type is asked for (extract/purposes.py): no purpose row yet
-- (new, or never asked), or a row read when the user's fingerprint was another (changed since).
SELECT u.id
FROM staging.users u
LEFT JOIN staging.user_purposes p ON p.tenant = u.tenant AND p.user_id = u.id
WHERE u.tenant = :t
  AND (p.user_id IS NULL
       OR p.fingerprint IS DISTINCT FROM staging.purpose_fingerprint(
              u.user_principal_name, u.mail, u.proxy_addresses, u.account_enabled, u.user_type,
              u.assigned_licenses, u.display_name))
ORDER BY u.id COLLATE "C"

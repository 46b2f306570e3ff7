-- The staged users whose mailbox type is known and current (not asked again), by outcome.
SELECT p.status, count(*) AS n
FROM staging.users u
JOIN staging.user_purposes p ON p.tenant = u.tenant AND p.user_id = u.id
WHERE u.tenant = :t
  AND p.fingerprint = staging.purpose_fingerprint(
          u.user_principal_name, u.mail, u.proxy_addresses, u.account_enabled, u.user_type,
          u.assigned_licenses, u.display_name)
GROUP BY p.status

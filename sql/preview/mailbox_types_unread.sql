-- Staged users whose mailbox type the next sync still has to read (none stored, or stored
-- before their row changed): the preview of exclude_mailbox_types cannot see what they are.
SELECT count(*)
FROM staging.users u
LEFT JOIN staging.user_purposes p ON p.tenant = u.tenant AND p.user_id = u.id
WHERE u.tenant = :tenant
  AND (p.user_id IS NULL
       OR p.fingerprint IS DISTINCT FROM staging.purpose_fingerprint(
              u.user_principal_name, u.mail, u.proxy_addresses, u.account_enabled, u.user_type,
              u.assigned_licenses, u.display_name))

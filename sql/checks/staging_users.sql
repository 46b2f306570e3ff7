-- The staging users columns the staging suite checks (one row per staged Graph user).
SELECT id, user_principal_name, account_enabled
FROM staging.users
WHERE tenant = :tenant

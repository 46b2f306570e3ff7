-- The staging suite's columns for the users this extraction wrote since the last transform
-- (sync.touched kind 'user', migration 014): what a daily check validates (checks/scope.py).
SELECT u.id, u.user_principal_name, u.account_enabled
FROM sync.touched t
JOIN staging.users u ON u.tenant = :tenant AND u.id = t.id
WHERE t.tenant = :tenant AND t.kind = 'user'

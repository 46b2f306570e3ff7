-- The staging users columns the staging suite checks (one row per staged Graph user); daily
-- (:changed_only, checks/scope.py) only the users the extraction wrote since the last
-- transform (sync.touched kind 'user', migration 014).
SELECT u.id, u.user_principal_name, u.account_enabled
FROM staging.users u
WHERE u.tenant = :tenant
  AND (NOT CAST(:changed_only AS boolean)
       OR u.id IN (SELECT t.id FROM sync.touched t WHERE t.tenant = :tenant AND t.kind = 'user'))

-- The staging groups columns the staging suite checks (one row per staged Graph group).
SELECT id, display_name
FROM staging.groups
WHERE tenant = :tenant

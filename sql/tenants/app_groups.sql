-- The app's own groups of a tenant: the only valid targets of group_mapping.
SELECT name FROM app.groups
WHERE tenant = :tenant AND source = 'app' AND removed_at IS NULL
ORDER BY name

-- Every earlier version of a tenant's settings, newest first, with when it was replaced.
SELECT version, settings, valid_from, replaced_at
FROM sync.tenant_settings_history
WHERE slug = :slug
ORDER BY version DESC

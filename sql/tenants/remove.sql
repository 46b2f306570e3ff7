-- Removing a tenant stops its syncs; its app data is never deleted.
WITH old AS (
    INSERT INTO sync.tenant_settings_history (slug, version, settings, valid_from)
    SELECT slug, version, settings, updated_at FROM sync.tenant_settings WHERE slug = :slug
)
DELETE FROM sync.tenant_settings WHERE slug = :slug RETURNING slug

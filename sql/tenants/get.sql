SELECT settings, version, updated_at FROM sync.tenant_settings WHERE slug = :slug

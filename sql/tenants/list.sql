SELECT slug, settings, version, updated_at FROM sync.tenant_settings ORDER BY slug

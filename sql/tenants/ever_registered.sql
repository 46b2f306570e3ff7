-- Whether this tenant was ever registered (now or in the history): a removed demo stays removed.
SELECT EXISTS (SELECT 1 FROM sync.tenant_settings WHERE slug = :slug)
    OR EXISTS (SELECT 1 FROM sync.tenant_settings_history WHERE slug = :slug)

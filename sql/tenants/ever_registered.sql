SELECT EXISTS (SELECT 1 FROM sync.tenant_settings)
    OR EXISTS (SELECT 1 FROM sync.tenant_settings_history)

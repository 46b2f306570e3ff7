-- Keep the previous version in the history, then store the new one (one statement, atomic).
-- A tenant removed and added again continues its version numbers (the history keeps them all).
WITH old AS (
    INSERT INTO sync.tenant_settings_history (slug, version, settings, valid_from)
    SELECT slug, version, settings, updated_at FROM sync.tenant_settings
    WHERE slug = :slug AND settings IS DISTINCT FROM CAST(:settings AS jsonb)
    RETURNING version
)
INSERT INTO sync.tenant_settings (slug, settings, version)
VALUES (
    :slug, CAST(:settings AS jsonb),
    (SELECT coalesce(max(h.version), 0) + 1 FROM sync.tenant_settings_history h
      WHERE h.slug = :slug)
)
ON CONFLICT (slug) DO UPDATE
SET settings = excluded.settings,
    version = sync.tenant_settings.version + 1,
    updated_at = now()
WHERE sync.tenant_settings.settings IS DISTINCT FROM excluded.settings
RETURNING version

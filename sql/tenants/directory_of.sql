-- Which directory a registered tenant's stored settings point at (registry/tenants.save).
SELECT settings ->> 'tenant_id' AS tenant_id, settings ->> 'client_id' AS client_id,
       settings ->> 'graph_base_url' AS graph_base_url
FROM sync.tenant_settings
WHERE slug = :slug

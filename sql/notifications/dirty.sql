SELECT tenant, first_at, last_at, notifications, reason
FROM sync.dirty_tenants
ORDER BY last_at, tenant

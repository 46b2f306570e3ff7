DELETE FROM sync.dirty_tenants WHERE tenant = :tenant AND last_at = :last_at

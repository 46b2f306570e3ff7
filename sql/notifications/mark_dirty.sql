INSERT INTO sync.dirty_tenants AS d (tenant, first_at, last_at, notifications, reason)
VALUES (:tenant, :at, :at, :n, :reason)
ON CONFLICT (tenant) DO UPDATE
SET last_at = greatest(d.last_at, excluded.last_at),
    notifications = d.notifications + excluded.notifications,
    reason = excluded.reason

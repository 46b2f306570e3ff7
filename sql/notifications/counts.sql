SELECT kind, count FROM sync.notification_counts WHERE tenant = :tenant ORDER BY kind

SELECT tenant, resource, subscription_id, notification_url, expires_at, lifecycle
FROM sync.graph_subscriptions
WHERE tenant = :tenant
ORDER BY resource

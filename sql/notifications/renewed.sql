UPDATE sync.graph_subscriptions
SET expires_at = :expires_at, renewed_at = now(), lifecycle = NULL, lifecycle_at = NULL
WHERE tenant = :tenant AND subscription_id = :subscription_id

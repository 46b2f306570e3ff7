UPDATE sync.graph_subscriptions
SET lifecycle = :event, lifecycle_at = :at
WHERE subscription_id = :subscription_id

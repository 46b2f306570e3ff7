SELECT tenant, resource, client_state_hash
FROM sync.graph_subscriptions
WHERE subscription_id = :subscription_id

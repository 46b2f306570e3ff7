DELETE FROM sync.graph_subscriptions WHERE tenant = :tenant AND subscription_id = :subscription_id

SELECT DISTINCT tenant FROM sync.graph_subscriptions ORDER BY tenant

INSERT INTO sync.graph_subscriptions AS s
    (tenant, resource, subscription_id, client_state_hash, notification_url, expires_at)
VALUES (:tenant, :resource, :subscription_id, :client_state_hash, :notification_url, :expires_at)
ON CONFLICT (tenant, resource) DO UPDATE
SET subscription_id = excluded.subscription_id,
    client_state_hash = excluded.client_state_hash,
    notification_url = excluded.notification_url,
    expires_at = excluded.expires_at,
    created_at = now(),
    renewed_at = NULL,
    lifecycle = NULL,
    lifecycle_at = NULL

-- The included user holding an address (the winner when two users resolve to it), compared by
-- address key as the transform compares them.
SELECT s.graph_id, s.email, s.display_name, u.user_principal_name AS upn,
       u.account_enabled, u.created_date_time
FROM sync.snapshot_users s
LEFT JOIN staging.users u ON u.tenant = :tenant AND u.id = s.graph_id
WHERE s.tenant = :tenant AND s.included AND sync.address_key(s.email) = sync.address_key(:email)

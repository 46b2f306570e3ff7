-- The included user holding an address (the winner when two users resolve to it).
SELECT s.graph_id, s.email, s.display_name, u.user_principal_name AS upn,
       u.account_enabled, u.created_date_time
FROM sync.snapshot_users s
LEFT JOIN staging.users u ON u.tenant = :tenant AND u.id = s.graph_id
WHERE s.tenant = :tenant AND s.included AND lower(s.email) = lower(:email)

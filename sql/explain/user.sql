-- One user of the snapshot by Graph id, with the UPN from staging (a manager, a duplicate's winner).
SELECT s.graph_id, s.email, s.display_name, s.included, s.reason, u.user_principal_name AS upn
FROM sync.snapshot_users s
LEFT JOIN staging.users u ON u.tenant = :tenant AND u.id = s.graph_id
WHERE s.tenant = :tenant AND s.graph_id = :user_id

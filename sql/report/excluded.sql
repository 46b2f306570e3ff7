-- Graph users left out of the snapshot, with every reason that applies.
-- (mailbox_purpose: the mailbox type behind a mailbox_type reason, migration 024)
SELECT s.graph_id, u.user_principal_name, u.display_name, s.email, s.reason, s.reasons,
       p.purpose AS mailbox_purpose
FROM sync.snapshot_users AS s
JOIN staging.users AS u ON u.tenant = s.tenant AND u.id = s.graph_id
LEFT JOIN staging.user_purposes AS p ON p.tenant = s.tenant AND p.user_id = s.graph_id
WHERE s.tenant = :tenant AND NOT s.included
ORDER BY s.reason, u.user_principal_name

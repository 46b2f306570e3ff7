-- Graph users of a tenant matching an address or UPN, compared by address key
-- (sync.address_key: NFKC, Unicode whitespace trimmed, lower-cased, as the transform compares
-- addresses): by UPN, mail, any proxy address (smtp: or SMTP:), the resolved snapshot address,
-- or the Graph id itself.
SELECT
    u.id AS graph_id, u.user_principal_name AS upn, u.mail, u.proxy_addresses,
    u.display_name, u.account_enabled, u.user_type, u.assigned_licenses, u.created_date_time,
    s.included, s.reason, s.reasons, s.email, s.manager_graph_id, s.manager_note,
    p.purpose AS mailbox_purpose, p.status AS purpose_status, p.code AS purpose_code
FROM staging.users u
LEFT JOIN sync.snapshot_users s ON s.tenant = :tenant AND s.graph_id = u.id
LEFT JOIN staging.user_purposes p ON p.tenant = :tenant AND p.user_id = u.id
CROSS JOIN (SELECT sync.address_key(:q) AS k) q
WHERE u.tenant = :tenant
  AND (sync.address_key(u.user_principal_name) = q.k
       OR sync.address_key(u.mail) = q.k
       OR sync.address_key(s.email) = q.k
       OR u.id = btrim(:q)
       OR EXISTS (
           SELECT 1 FROM jsonb_array_elements_text(
                   CASE WHEN jsonb_typeof(u.proxy_addresses) = 'array'
                        THEN u.proxy_addresses ELSE '[]' END) AS p (v)
            WHERE sync.address_key(substr(p.v, strpos(p.v, ':') + 1)) = q.k))
ORDER BY s.included DESC NULLS LAST, u.id

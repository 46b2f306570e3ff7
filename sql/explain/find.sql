-- Graph users of a tenant matching an address or UPN (case-insensitive, trimmed): by UPN, mail,
-- any proxy address (smtp: or SMTP:), the resolved snapshot address, or the Graph id itself.
SELECT
    u.id AS graph_id, u.user_principal_name AS upn, u.mail, u.proxy_addresses,
    u.display_name, u.account_enabled, u.user_type, u.assigned_licenses, u.created_date_time,
    s.included, s.reason, s.reasons, s.email, s.manager_graph_id, s.manager_note
FROM staging.users u
LEFT JOIN sync.snapshot_users s ON s.tenant = :tenant AND s.graph_id = u.id
WHERE u.tenant = :tenant
  AND (lower(btrim(u.user_principal_name)) = lower(btrim(:q))
       OR lower(btrim(u.mail)) = lower(btrim(:q))
       OR lower(btrim(s.email)) = lower(btrim(:q))
       OR u.id = btrim(:q)
       OR EXISTS (
           SELECT 1 FROM jsonb_array_elements_text(
                   CASE WHEN jsonb_typeof(u.proxy_addresses) = 'array'
                        THEN u.proxy_addresses ELSE '[]' END) AS p (v)
            WHERE lower(btrim(substr(p.v, strpos(p.v, ':') + 1))) = lower(btrim(:q))))
ORDER BY s.included DESC NULLS LAST, u.id

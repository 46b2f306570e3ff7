-- `sync --user`: the staged users an address or id names (Graph id, UPN, mail or any smtp
-- proxy address, ignoring case), as explain matches them.
SELECT u.id, u.user_principal_name
FROM staging.users u
WHERE u.tenant = :t
  AND (u.id = :who
       OR lower(u.user_principal_name) = lower(:who)
       OR lower(u.mail) = lower(:who)
       OR EXISTS (
           SELECT 1
           FROM jsonb_array_elements_text(
                    CASE WHEN jsonb_typeof(u.proxy_addresses) = 'array'
                         THEN u.proxy_addresses ELSE '[]' END) AS p (v)
           WHERE lower(p.v) = 'smtp:' || lower(:who)))
ORDER BY u.id
LIMIT 5

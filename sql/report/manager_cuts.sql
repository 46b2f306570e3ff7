-- Imported users whose manager link the transform cut to break a manager cycle, with the
-- cycle's members by address, in manager order from the user whose link was cut.
SELECT
    s.graph_id, u.user_principal_name, s.email,
    (SELECT string_agg(coalesce(m.email, c.id), ' → ' ORDER BY c.n)
       FROM unnest(string_to_array(substr(s.manager_note, 15), ' ')) WITH ORDINALITY AS c (id, n)
       LEFT JOIN sync.snapshot_users m ON m.tenant = :tenant AND m.graph_id = c.id) AS cycle
FROM sync.snapshot_users AS s
JOIN staging.users AS u ON u.tenant = s.tenant AND u.id = s.graph_id
WHERE s.tenant = :tenant AND s.included AND s.manager_note LIKE 'manager\_cycle\:%'
ORDER BY s.email

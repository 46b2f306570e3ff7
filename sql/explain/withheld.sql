-- The withheld changes (sync.withheld) of one person: by Graph id, or by the app's address.
SELECT w.kind, w.key
FROM sync.withheld w
JOIN app.users u ON u.tenant = w.tenant AND u.id = w.user_id
WHERE w.tenant = :tenant AND w.status <> 'with_person'
  AND (u.external_id = CAST(:graph_id AS text)
       OR lower(u.email) = lower(CAST(:email AS text)))

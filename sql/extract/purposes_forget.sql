-- Mailbox types of users no longer staged (deleted in Graph, or gone in a full read).
DELETE FROM staging.user_purposes p
WHERE p.tenant = :t
  AND NOT EXISTS (SELECT 1 FROM staging.users u WHERE u.tenant = p.tenant AND u.id = p.user_id)

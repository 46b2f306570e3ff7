-- One person's mailbox type as staged (extract/person.py), or no row.
SELECT p.purpose, p.status, p.code FROM staging.user_purposes p
WHERE p.tenant = :t AND p.user_id = :id

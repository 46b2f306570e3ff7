-- A group whose members Graph refused in a full read: its memberships as last read.
INSERT INTO staging.group_members (tenant, group_id, member_id, member_type)
SELECT :t, k.group_id, k.member_id, k.member_type
FROM sp_kept_members k
WHERE k.group_id = :g
ON CONFLICT DO NOTHING

-- Soft-deleted objects (:ids, of kind :kind): their membership rows, as member or as group,
-- move to staging.suspended_members until a restore or a hard delete.
WITH moved AS (
    DELETE FROM staging.group_members gm
    WHERE gm.tenant = :t
      AND (gm.member_id = ANY (CAST(:ids AS text[])) OR gm.group_id = ANY (CAST(:ids AS text[])))
    RETURNING gm.group_id, gm.member_id, gm.member_type
)
INSERT INTO staging.suspended_members (tenant, owner_id, owner_kind, group_id, member_id, member_type)
SELECT :t, CASE WHEN m.member_id = ANY (CAST(:ids AS text[])) THEN m.member_id ELSE m.group_id END,
       :kind, m.group_id, m.member_id, m.member_type
FROM moved m
ON CONFLICT (tenant, group_id, member_id) DO NOTHING

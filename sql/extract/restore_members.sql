-- Restored objects (:ids): the memberships suspended at their soft delete come back (a hard
-- delete of the other side has dropped its rows already: drop_suspended.sql).
WITH back AS (
    DELETE FROM staging.suspended_members s
    WHERE s.tenant = :t AND s.owner_id = ANY (CAST(:ids AS text[]))
    RETURNING s.group_id, s.member_id, s.member_type
)
INSERT INTO staging.group_members (tenant, group_id, member_id, member_type)
SELECT :t, b.group_id, b.member_id, b.member_type
FROM back b
ON CONFLICT (tenant, group_id, member_id) DO NOTHING
RETURNING member_id

-- (group, member) pairs a members@delta removed, or re-added ones about to be copied again.
DELETE FROM staging.group_members gm
USING unnest(CAST(:group_ids AS text[]), CAST(:member_ids AS text[])) AS p (group_id, member_id)
WHERE gm.tenant = :t AND gm.group_id = p.group_id AND gm.member_id = p.member_id

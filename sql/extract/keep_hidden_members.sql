-- Before a full read clears staging.group_members: the rows of these groups (hidden
-- membership, or unreadable last time), put back for any group Graph refuses this time.
CREATE TEMP TABLE sp_kept_members ON COMMIT DROP AS
SELECT m.group_id, m.member_id, m.member_type
FROM staging.group_members m
WHERE m.tenant = :t AND m.group_id = ANY (CAST(:ids AS text[]))

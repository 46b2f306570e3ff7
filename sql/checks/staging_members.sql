-- Direct memberships summed up per group (a frame the size of the group list, not of the
-- membership list): whether the group itself was staged, and how many of its members point at
-- a user or group the extraction did not stage, or are of a type we do not know. Members of
-- other known directory types (contacts, devices, service principals) are not staged and fine.
-- One hash join against the staged ids of both kinds; samples are unordered (no per-group sort).
WITH known AS (
    SELECT id, 'user' AS kind FROM staging.users WHERE tenant = :tenant
    UNION ALL
    SELECT id, 'group' FROM staging.groups WHERE tenant = :tenant
), flagged AS (
    SELECT
        gm.group_id, gm.member_type, gm.member_id,
        k.id IS NULL AND NOT gm.member_type = ANY (CAST(:other_types AS text[])) AS unknown
    FROM staging.group_members gm
    LEFT JOIN known k ON k.id = gm.member_id AND k.kind = gm.member_type
    WHERE gm.tenant = :tenant
), members AS (
    SELECT
        group_id,
        count(*) AS members,
        count(*) FILTER (WHERE unknown) AS unknown_members,
        (array_agg(member_type || ':' || member_id) FILTER (WHERE unknown))[1:3] AS unknown_sample
    FROM flagged
    GROUP BY group_id
), staged AS (
    SELECT id FROM staging.groups WHERE tenant = :tenant
)
SELECT
    coalesce(s.id, m.group_id) AS group_id,
    s.id IS NOT NULL AS group_staged,
    coalesce(m.members, 0) AS members,
    coalesce(m.unknown_members, 0) AS unknown_members,
    array_to_string(m.unknown_sample, ', ') AS unknown_sample
FROM staged s
FULL JOIN members m ON m.group_id = s.id

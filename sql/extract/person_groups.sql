-- `sync --user`: the staged groups among the person's direct groups as Graph lists them now,
-- and the staged groups the person is a direct member of: with names and visibility, so the
-- read can tell joined, left and hidden ones (extract/person.py).
SELECT g.id, g.display_name, g.visibility,
       g.id = ANY (CAST(:listed AS text[])) AS listed,
       EXISTS (SELECT 1 FROM staging.group_members m
               WHERE m.tenant = :t AND m.group_id = g.id AND m.member_id = :id) AS staged,
       EXISTS (SELECT 1 FROM staging.unreadable_groups u
               WHERE u.tenant = :t AND u.group_id = g.id) AS unreadable
FROM staging.groups g
WHERE g.tenant = :t
  AND (g.id = ANY (CAST(:listed AS text[]))
       OR g.id IN (SELECT m.group_id FROM staging.group_members m
                   WHERE m.tenant = :t AND m.member_id = :id))
ORDER BY g.display_name, g.id

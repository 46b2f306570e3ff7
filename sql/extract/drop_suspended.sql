-- Hard-deleted objects (:ids): every suspended membership they are part of is gone for good.
DELETE FROM staging.suspended_members
WHERE tenant = :t
  AND (owner_id = ANY (CAST(:ids AS text[]))
       OR group_id = ANY (CAST(:ids AS text[]))
       OR member_id = ANY (CAST(:ids AS text[])))

-- After a full read of one family (:kind): suspended rows survive only for the objects this
-- read reported soft-deleted (:ids); any other owner was restored or hard-deleted meanwhile.
DELETE FROM staging.suspended_members
WHERE tenant = :t AND owner_kind = :kind AND NOT (owner_id = ANY (CAST(:ids AS text[])))

-- Memberships of soft-deleted directory objects, kept for their restore. Idempotent.
--
-- Graph keeps a soft-deleted user's (or group's) memberships, and reports no members@delta
-- change for them, neither at the deletion nor at a restore within 30 days
-- (delta-query-groups.md). So the extraction moves them out of staging.group_members when
-- the object is soft-deleted (the snapshot must not hold them) and back when it returns;
-- a hard delete drops them for good. `owner_id` is the soft-deleted object whose deletion
-- suspended the row (the member, or the group itself).
CREATE TABLE IF NOT EXISTS staging.suspended_members (
    tenant       text NOT NULL,
    owner_id     text NOT NULL,
    owner_kind   text NOT NULL CHECK (owner_kind IN ('user', 'group')),
    group_id     text NOT NULL,
    member_id    text NOT NULL,
    member_type  text NOT NULL,
    suspended_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, group_id, member_id)
);
CREATE INDEX IF NOT EXISTS suspended_members_owner ON staging.suspended_members (tenant, owner_id);

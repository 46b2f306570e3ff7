-- Hidden-membership groups (visibility HiddenMembership): listing their members needs
-- Member.Read.Hidden besides GroupMember.Read.All. Idempotent.
--
-- staging.groups.visibility tells the extraction which groups those are (Public, Private,
-- HiddenMembership, or null for most security groups).
ALTER TABLE staging.groups ADD COLUMN IF NOT EXISTS visibility text;

-- The groups whose members the latest extraction could not read (Graph answered 403), with
-- the permission to grant. Replaced by every extraction, like the rest of staging. Their
-- staged memberships are kept as last read; the transform fails the sync when one of them
-- decides who is in scope, and the diff never removes a membership because of one.
CREATE TABLE IF NOT EXISTS staging.unreadable_groups (
    tenant     text NOT NULL,
    group_id   text NOT NULL,
    permission text NOT NULL,
    status     integer,
    code       text,
    request_id text,
    PRIMARY KEY (tenant, group_id)
);

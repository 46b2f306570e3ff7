-- The audit: every change a sync (or an undo) applied to app.*, with before and after values.
-- `before` holds the prior value of every column the change set (enough to revert it), `after`
-- the value it set; rows a run created carry their new app id. Idempotent.
ALTER TABLE sync.runs ADD COLUMN IF NOT EXISTS undo_of bigint REFERENCES sync.runs (id);

CREATE TABLE IF NOT EXISTS sync.changes (
    id         bigserial PRIMARY KEY,
    tenant     text NOT NULL,
    run_id     bigint NOT NULL REFERENCES sync.runs (id),
    entity     text NOT NULL,   -- user | group | membership | manager
    action     text NOT NULL,   -- the diff's action; an undo records revert | deactivate
                                -- | remove | add
    key        text NOT NULL,   -- graph id (user, group), "group/user" (membership)
    label      text,            -- email or group name, for people to read
    user_id    bigint,          -- app.users.id (user, manager and membership changes)
    group_id   bigint,          -- app.groups.id (group and membership changes)
    before     jsonb,           -- column -> prior value (null for a created row)
    after      jsonb,           -- column -> value set (null for a deleted membership)
    applied_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS changes_run ON sync.changes (tenant, run_id);
CREATE INDEX IF NOT EXISTS changes_user ON sync.changes (tenant, user_id);
-- memberships are found through changes_user; group changes are few (a partial index)
DROP INDEX IF EXISTS sync.changes_group;
CREATE INDEX IF NOT EXISTS changes_groups ON sync.changes (tenant, group_id) WHERE entity = 'group';

-- Each apply step reads one (entity, action) of one run's diff. Those rows were written in the
-- same transaction, so the planner has no statistics for them and picks nested loops; with
-- only diffs_tenant (tenant, run_id) each loop re-read the whole run (a 4k-group tenant's
-- rename step took minutes). This index makes each loop one lookup.
CREATE INDEX IF NOT EXISTS diffs_step ON sync.diffs (tenant, run_id, entity, action);

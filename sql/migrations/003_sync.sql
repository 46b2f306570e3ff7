-- Tenant settings (current + history), delta state, snapshots, diffs and runs.
CREATE TABLE IF NOT EXISTS sync.tenant_settings (
    slug       text PRIMARY KEY,
    settings   jsonb NOT NULL,
    version    integer NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS sync.tenant_settings_history (
    slug        text NOT NULL,
    version     integer NOT NULL,
    settings    jsonb NOT NULL,
    valid_from  timestamptz NOT NULL,
    replaced_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (slug, version)
);

CREATE TABLE IF NOT EXISTS sync.delta_state (
    tenant     text NOT NULL,
    entity     text NOT NULL,
    delta_link text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, entity)
);

-- Every Graph user of the latest extraction, with whether it is in the snapshot and, if not, why.
CREATE TABLE IF NOT EXISTS sync.snapshot_users (
    tenant           text NOT NULL,
    graph_id         text NOT NULL,
    included         boolean NOT NULL,
    reason           text,
    email            text,
    display_name     text,
    first_name       text,
    last_name        text,
    job_title        text,
    department       text,
    manager_graph_id text,
    manager_note     text,
    reasons          text[] NOT NULL DEFAULT '{}',  -- every reason that applies; reason = reasons[1]
    PRIMARY KEY (tenant, graph_id)
);
-- Added after the first draft; kept for databases made from it (nothing has shipped).
ALTER TABLE sync.snapshot_users ADD COLUMN IF NOT EXISTS reasons text[] NOT NULL DEFAULT '{}';
CREATE INDEX IF NOT EXISTS snapshot_users_email ON sync.snapshot_users (tenant, lower(email));

-- Every Graph group, with whether it is imported; mapped groups name their app group.
CREATE TABLE IF NOT EXISTS sync.snapshot_groups (
    tenant       text NOT NULL,
    graph_id     text NOT NULL,
    included     boolean NOT NULL,
    reason       text,
    name         text,
    group_kind   text NOT NULL,
    mapped_to    text,
    PRIMARY KEY (tenant, graph_id)
);

-- Flattened memberships: every included user in every included group at or above it.
CREATE TABLE IF NOT EXISTS sync.snapshot_memberships (
    tenant         text NOT NULL,
    group_graph_id text NOT NULL,
    user_graph_id  text NOT NULL,
    PRIMARY KEY (tenant, group_graph_id, user_graph_id)
);

CREATE TABLE IF NOT EXISTS sync.runs (
    id             bigserial PRIMARY KEY,
    tenant         text NOT NULL,
    dagster_run_id text,
    dry_run        boolean NOT NULL DEFAULT false,
    status         text NOT NULL DEFAULT 'running',
    started_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    counts         jsonb NOT NULL DEFAULT '{}',
    error          text
);
CREATE INDEX IF NOT EXISTS runs_tenant ON sync.runs (tenant, started_at DESC);
CREATE UNIQUE INDEX IF NOT EXISTS runs_dagster ON sync.runs (tenant, dagster_run_id, dry_run);

-- The planned changes of one run: what a test sync reports is exactly what a sync applies.
CREATE TABLE IF NOT EXISTS sync.diffs (
    tenant      text NOT NULL,
    run_id      bigint NOT NULL REFERENCES sync.runs (id),
    entity      text NOT NULL,   -- user | group | membership | manager
    action      text NOT NULL,   -- create | update | adopt | reactivate | deactivate | rename
                                 -- | restore | remove | add | set
    key         text NOT NULL,   -- graph id (user, group), "group_id/user_id" (membership)
    label       text,            -- email or group name, for people to read
    app_id      bigint,          -- the app row concerned, when it exists already
    before      jsonb,
    after       jsonb,
    -- membership rows only: the app group and user, by app id when known, else by Graph id
    -- (resolved after this run's creates); key is "<group ext id | app-group id>/<user ...>"
    group_app_id      bigint,
    group_external_id text,
    user_app_id       bigint,
    user_external_id  text,
    PRIMARY KEY (run_id, entity, key, action)
);
ALTER TABLE sync.diffs ADD COLUMN IF NOT EXISTS group_app_id bigint;
ALTER TABLE sync.diffs ADD COLUMN IF NOT EXISTS group_external_id text;
ALTER TABLE sync.diffs ADD COLUMN IF NOT EXISTS user_app_id bigint;
ALTER TABLE sync.diffs ADD COLUMN IF NOT EXISTS user_external_id text;
CREATE INDEX IF NOT EXISTS diffs_tenant ON sync.diffs (tenant, run_id);

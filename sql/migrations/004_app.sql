-- The target application's tables. The app owns them: their shape is a contract (DESIGN.md).
CREATE TABLE IF NOT EXISTS app.users (
    id             bigserial PRIMARY KEY,
    tenant         text NOT NULL,
    external_id    text,
    email          text NOT NULL,
    display_name   text,
    first_name     text,
    last_name      text,
    job_title      text,
    department     text,
    manager_id     bigint REFERENCES app.users (id),
    is_active      boolean NOT NULL DEFAULT true,
    source         text NOT NULL DEFAULT 'manual' CHECK (source IN ('m365', 'manual')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    deactivated_at timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS users_active_email ON app.users (tenant, lower(email)) WHERE is_active;
CREATE UNIQUE INDEX IF NOT EXISTS users_external_id ON app.users (tenant, external_id)
    WHERE external_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS app.groups (
    id          bigserial PRIMARY KEY,
    tenant      text NOT NULL,
    name        text NOT NULL,
    external_id text,
    source      text NOT NULL DEFAULT 'app' CHECK (source IN ('m365', 'app')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    removed_at  timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS groups_external_id ON app.groups (tenant, external_id)
    WHERE external_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS groups_name ON app.groups (tenant, name);

CREATE TABLE IF NOT EXISTS app.group_members (
    tenant   text NOT NULL,
    group_id bigint NOT NULL REFERENCES app.groups (id),
    user_id  bigint NOT NULL REFERENCES app.users (id),
    source   text NOT NULL DEFAULT 'manual' CHECK (source IN ('m365', 'manual')),
    PRIMARY KEY (tenant, group_id, user_id)
);
CREATE INDEX IF NOT EXISTS group_members_user ON app.group_members (tenant, user_id);

-- The change set the incremental diff reads (load/diff.py). Idempotent.
--
-- The diff compares the snapshot with app.*, and both change between syncs: the transform
-- rewrites snapshot rows, and the app (or a person in it) edits its own tables. Every write
-- to either records the keys it touched in sync.diff_dirty, in the write's own transaction,
-- whoever makes it, so a key that is not dirty is known to need no change (its last applied
-- diff left it in line, and neither side moved since):
--   'user'          a Graph user id: a snapshot_users row, a snapshot membership of the user,
--                   or an app.users row's external_id (before and after);
--   'email'         an app.users address, lower()ed (before and after): adoption by address;
--   'app_user'      an app.users id: the row, or one of its app.group_members rows;
--   'app_group'     an app.groups id, and 'app_group_ext' its external_id (before and after):
--                   the app group's members are looked at again.
-- A TRUNCATE of a tracked table names no tenant: it forgets every tenant's diff state, so
-- every next diff is computed whole.
-- Each record carries a sequence number; the diff remembers the (key, seq) pairs it read
-- (sync.diff_seen) and the apply that commits that diff deletes exactly those, so a key
-- written again meanwhile (a new seq) stays dirty. The apply's own writes to app.* are not
-- recorded (they bring the keys in line with the snapshot): it sets
-- sync_pipeline.writer = 'sync' for its transaction. Groups are always diffed whole (cheap).
CREATE SEQUENCE IF NOT EXISTS sync.diff_dirty_seq;
CREATE TABLE IF NOT EXISTS sync.diff_dirty (
    tenant text NOT NULL,
    kind   text NOT NULL,
    id     text NOT NULL,
    seq    bigint NOT NULL DEFAULT nextval('sync.diff_dirty_seq'),
    PRIMARY KEY (tenant, kind, id)
);

-- What one run's diff read of sync.diff_dirty (consumed by the apply of that run). Unlogged
-- like sync.diffs: a crash empties both, the plan is made again, and a lost row only leaves
-- a key dirty (more work next time, never a missed change).
CREATE UNLOGGED TABLE IF NOT EXISTS sync.diff_seen (
    run_id bigint NOT NULL,
    tenant text NOT NULL,
    kind   text NOT NULL,
    id     text NOT NULL,
    seq    bigint NOT NULL,
    PRIMARY KEY (run_id, kind, id)
);

-- How each run's diff was computed (incremental or whole, and why), and what it was computed
-- from: the fingerprint of the settings the diff reads, the schema and the diff's SQL, and
-- whether any group's members were unreadable (their memberships are kept, a rule across
-- keys: the diff is whole while and after that happens).
CREATE UNLOGGED TABLE IF NOT EXISTS sync.diff_plans (
    run_id       bigint PRIMARY KEY,
    tenant       text NOT NULL,
    path         text NOT NULL,
    full_reason  text NOT NULL,
    fingerprint  text NOT NULL,
    unreadable   boolean NOT NULL,
    users_considered bigint NOT NULL
);

-- The last applied diff per tenant: the incremental diff runs only when its fingerprint still
-- matches and no unreadable groups were involved.
CREATE TABLE IF NOT EXISTS sync.diff_state (
    tenant      text PRIMARY KEY,
    fingerprint text NOT NULL,
    unreadable  boolean NOT NULL,
    run_id      bigint NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

-- Managed users by manager (the incremental diff looks at the reports of a changed user).
CREATE INDEX IF NOT EXISTS snapshot_users_manager
    ON sync.snapshot_users (tenant, manager_graph_id) WHERE manager_graph_id IS NOT NULL;

-- Record (tenant, kind, id) rows; a key recorded again gets a new seq.
CREATE OR REPLACE FUNCTION sync.dirty_snapshot() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- TG_ARGV[0]: the Graph user id column of the table
    EXECUTE 'INSERT INTO sync.diff_dirty AS d (tenant, kind, id)
         SELECT DISTINCT c.tenant, ''user'', c.' || quote_ident(TG_ARGV[0]) || ' FROM changed c
         ON CONFLICT (tenant, kind, id) DO UPDATE SET seq = nextval(''sync.diff_dirty_seq'')';
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION sync.dirty_app_users() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('sync_pipeline.writer', true) = 'sync' THEN
        RETURN NULL;
    END IF;
    INSERT INTO sync.diff_dirty AS d (tenant, kind, id)
    SELECT DISTINCT x.tenant, x.kind, x.id
    FROM changed c
    CROSS JOIN LATERAL (VALUES
        (c.tenant, 'app_user', CAST(c.id AS text)),
        (c.tenant, 'user', c.external_id),
        (c.tenant, 'email', lower(c.email))
    ) AS x (tenant, kind, id)
    WHERE x.id IS NOT NULL
    ON CONFLICT (tenant, kind, id) DO UPDATE SET seq = nextval('sync.diff_dirty_seq');
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION sync.dirty_app_groups() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('sync_pipeline.writer', true) = 'sync' THEN
        RETURN NULL;
    END IF;
    INSERT INTO sync.diff_dirty AS d (tenant, kind, id)
    SELECT DISTINCT x.tenant, x.kind, x.id
    FROM changed c
    CROSS JOIN LATERAL (VALUES
        (c.tenant, 'app_group', CAST(c.id AS text)),
        (c.tenant, 'app_group_ext', c.external_id)
    ) AS x (tenant, kind, id)
    WHERE x.id IS NOT NULL
    ON CONFLICT (tenant, kind, id) DO UPDATE SET seq = nextval('sync.diff_dirty_seq');
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION sync.dirty_app_members() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('sync_pipeline.writer', true) = 'sync' THEN
        RETURN NULL;
    END IF;
    INSERT INTO sync.diff_dirty AS d (tenant, kind, id)
    SELECT DISTINCT c.tenant, 'app_user', CAST(c.user_id AS text)
    FROM changed c
    ON CONFLICT (tenant, kind, id) DO UPDATE SET seq = nextval('sync.diff_dirty_seq');
    RETURN NULL;
END $$;

-- A TRUNCATE names no tenant: every tenant's next diff is computed whole.
CREATE OR REPLACE FUNCTION sync.forget_diff_state() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM sync.diff_state;
    RETURN NULL;
END $$;

DO $$
DECLARE
    t record;
    ev text;
BEGIN
    FOR t IN SELECT * FROM (VALUES
        ('sync', 'snapshot_users', 'sync.dirty_snapshot(''graph_id'')'),
        ('sync', 'snapshot_memberships', 'sync.dirty_snapshot(''user_graph_id'')'),
        ('app', 'users', 'sync.dirty_app_users()'),
        ('app', 'groups', 'sync.dirty_app_groups()'),
        ('app', 'group_members', 'sync.dirty_app_members()')
    ) AS v (sch, tbl, fn) LOOP
        -- an UPDATE records the rows as they were and as they are: two triggers
        FOREACH ev IN ARRAY ARRAY['insert', 'update_new', 'update_old', 'delete'] LOOP
            EXECUTE 'DROP TRIGGER IF EXISTS diff_dirty_' || ev || ' ON '
                || quote_ident(t.sch) || '.' || quote_ident(t.tbl);
            EXECUTE 'CREATE TRIGGER diff_dirty_' || ev || ' AFTER '
                || upper(split_part(ev, '_', 1))
                || ' ON ' || quote_ident(t.sch) || '.' || quote_ident(t.tbl) || ' REFERENCING '
                || CASE WHEN ev IN ('delete', 'update_old') THEN 'OLD' ELSE 'NEW' END
                || ' TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION ' || t.fn;
        END LOOP;
        EXECUTE 'DROP TRIGGER IF EXISTS diff_dirty_truncate ON '
            || quote_ident(t.sch) || '.' || quote_ident(t.tbl);
        EXECUTE 'CREATE TRIGGER diff_dirty_truncate AFTER TRUNCATE ON '
            || quote_ident(t.sch) || '.' || quote_ident(t.tbl)
            || ' FOR EACH STATEMENT EXECUTE FUNCTION sync.forget_diff_state()';
    END LOOP;
END $$;

-- The change set the incremental transform reads. Idempotent.
--
-- sync.touched: per tenant, the staging keys written since the tenant's snapshot was last
-- built: kind 'user' (a user row, its licences, its manager link, or a group membership of the
-- user), 'group' (a group row, or a nesting edge below the group), 'members' (a user joined
-- or left the group), and 'full' (id '': a family was read in full, so the next transform
-- rebuilds everything). Statement-level triggers on the staging tables fill it in the same
-- transaction as the staging writes, whoever writes them; the transform consumes the tenant's
-- rows in its own transaction.
CREATE TABLE IF NOT EXISTS sync.touched (
    tenant text NOT NULL,
    kind   text NOT NULL,
    id     text NOT NULL,
    PRIMARY KEY (tenant, kind, id)
);

-- sync.snapshot_state: what each tenant's snapshot was last built from (a fingerprint of the
-- settings, the schema and the transform's SQL) and its row counts then. The incremental
-- transform runs only when all of them still match; otherwise it rebuilds in full.
CREATE TABLE IF NOT EXISTS sync.snapshot_state (
    tenant      text PRIMARY KEY,
    fingerprint text NOT NULL,
    users       bigint NOT NULL,
    groups      bigint NOT NULL,
    memberships bigint NOT NULL,
    built_at    timestamptz NOT NULL DEFAULT now()
);

-- Rows of a staging table keyed by one column (TG_ARGV: kind, column). Nothing is recorded
-- for a tenant already marked 'full'.
CREATE OR REPLACE FUNCTION sync.touch_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- (no format(): the migration runner passes this text through a driver that reads percent signs)
    EXECUTE 'INSERT INTO sync.touched (tenant, kind, id)
         SELECT DISTINCT c.tenant, ' || quote_literal(TG_ARGV[0]) || ', c.' || quote_ident(TG_ARGV[1]) || '
         FROM changed c
         WHERE c.' || quote_ident(TG_ARGV[1]) || ' IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM sync.touched f
                           WHERE f.tenant = c.tenant AND f.kind = ''full'' AND f.id = '''')
         ON CONFLICT DO NOTHING';
    RETURN NULL;
END $$;

-- Rows of staging.group_members: the group ('group' for a nesting edge, 'members' for any
-- other member) and, for a user member, the user.
CREATE OR REPLACE FUNCTION sync.touch_members() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO sync.touched (tenant, kind, id)
    SELECT DISTINCT x.tenant, x.kind, x.id
    FROM changed c
    CROSS JOIN LATERAL (VALUES
        (c.tenant, CASE WHEN c.member_type = 'group' THEN 'group' ELSE 'members' END, c.group_id),
        (c.tenant, 'user', CASE WHEN c.member_type = 'user' THEN c.member_id END)
    ) AS x (tenant, kind, id)
    WHERE x.id IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM sync.touched f
                      WHERE f.tenant = x.tenant AND f.kind = 'full' AND f.id = '')
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;

-- A TRUNCATE names no tenant: every snapshot is rebuilt in full next time.
CREATE OR REPLACE FUNCTION sync.forget_snapshot_state() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM sync.snapshot_state;
    RETURN NULL;
END $$;

DO $$
DECLARE
    t record;
    ev text;
BEGIN
    FOR t IN SELECT * FROM (VALUES
        ('users', 'sync.touch_rows(''user'', ''id'')'),
        ('user_licences', 'sync.touch_rows(''user'', ''user_id'')'),
        ('user_managers', 'sync.touch_rows(''user'', ''user_id'')'),
        ('groups', 'sync.touch_rows(''group'', ''id'')'),
        ('group_members', 'sync.touch_members()')
    ) AS v (tbl, fn) LOOP
        FOREACH ev IN ARRAY ARRAY['insert', 'update', 'delete'] LOOP
            EXECUTE 'DROP TRIGGER IF EXISTS touched_' || ev || ' ON staging.' || quote_ident(t.tbl);
            EXECUTE 'CREATE TRIGGER touched_' || ev || ' AFTER ' || upper(ev)
                || ' ON staging.' || quote_ident(t.tbl) || ' REFERENCING '
                || CASE ev WHEN 'delete' THEN 'OLD' ELSE 'NEW' END
                || ' TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION ' || t.fn;
        END LOOP;
        EXECUTE 'DROP TRIGGER IF EXISTS touched_truncate ON staging.' || quote_ident(t.tbl);
        EXECUTE 'CREATE TRIGGER touched_truncate AFTER TRUNCATE ON staging.' || quote_ident(t.tbl)
            || ' FOR EACH STATEMENT EXECUTE FUNCTION sync.forget_snapshot_state()';
    END LOOP;
END $$;

-- Lookups the incremental transform makes by key (sql/transform/users.sql, inc_memberships.sql).
-- Idempotent.

-- A recomputed user's memberships, read by index alone (the group id is in the index): at 100k
-- users the heap pages of a thousand users' memberships lie all over 1.2 M rows.
DROP INDEX IF EXISTS sync.snapshot_memberships_user;
CREATE INDEX IF NOT EXISTS snapshot_memberships_user_group
    ON sync.snapshot_memberships (tenant, user_graph_id) INCLUDE (group_graph_id);

-- The reports of a recomputed user (their manager's row decides their manager columns).
CREATE INDEX IF NOT EXISTS user_managers_manager
    ON staging.user_managers (tenant, manager_id);

-- The members cut from a manager cycle (a handful per tenant), whose cycle a change may break.
CREATE INDEX IF NOT EXISTS snapshot_users_cycle_cut
    ON sync.snapshot_users (tenant) WHERE starts_with(manager_note, 'manager_cycle:');

-- The nesting edges (a few thousand of 1.4 M memberships at 100k users), which every transform
-- reads whole to build the closure (sql/transform/closure.sql).
CREATE INDEX IF NOT EXISTS group_members_nesting
    ON staging.group_members (tenant, group_id, member_id) WHERE member_type = 'group';

-- A snapshot written by anyone but the transform can no longer be refreshed incrementally:
-- the incremental path trusts every row it does not recompute. The transform marks its own
-- transaction (sync_pipeline.writer = 'transform', sql/transform/state/consume.sql); any other
-- write marks the tenant's snapshot state, and the next transform rebuilds in full. This
-- replaces comparing the row counts recorded with a count of the snapshot's rows, which cost
-- a scan of 1.2 M memberships per run at 100k users and saw no update at all.
ALTER TABLE sync.snapshot_state
    ADD COLUMN IF NOT EXISTS written_outside boolean NOT NULL DEFAULT false;

CREATE OR REPLACE FUNCTION sync.snapshot_written() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('sync_pipeline.writer', true) IS DISTINCT FROM 'transform' THEN
        UPDATE sync.snapshot_state s SET written_outside = true
        WHERE s.tenant IN (SELECT DISTINCT c.tenant FROM changed c) AND NOT s.written_outside;
    END IF;
    RETURN NULL;
END $$;

-- Statement triggers with a transition table named "changed", one per event, plus one on
-- TRUNCATE, each dropped first so the migration can be applied again; used twice below.
CREATE OR REPLACE FUNCTION sync.install_statement_triggers(
    tbl regclass, prefix text, events text[], fn text, truncate_fn text
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    ev text;
BEGIN
    FOREACH ev IN ARRAY events LOOP
        EXECUTE 'DROP TRIGGER IF EXISTS ' || quote_ident(prefix || '_' || ev) || ' ON ' || tbl;
        EXECUTE 'CREATE TRIGGER ' || quote_ident(prefix || '_' || ev) || ' AFTER ' || upper(ev)
            || ' ON ' || tbl || ' REFERENCING '
            || CASE ev WHEN 'delete' THEN 'OLD' ELSE 'NEW' END
            || ' TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION ' || fn || '()';
    END LOOP;
    EXECUTE 'DROP TRIGGER IF EXISTS ' || quote_ident(prefix || '_truncate') || ' ON ' || tbl;
    EXECUTE 'CREATE TRIGGER ' || quote_ident(prefix || '_truncate') || ' AFTER TRUNCATE ON '
        || tbl || ' FOR EACH STATEMENT EXECUTE FUNCTION ' || truncate_fn || '()';
END $$;

SELECT sync.install_statement_triggers(('sync.' || t)::regclass, 'written',
                                       ARRAY['insert', 'update', 'delete'],
                                       'sync.snapshot_written', 'sync.forget_snapshot_state')
FROM unnest(ARRAY['snapshot_users', 'snapshot_groups', 'snapshot_memberships']) AS t;

-- A nesting edge (a group member of a group) is recorded as kind 'nesting' on the parent group,
-- no longer as 'group': 'group' now means the group's own row only. A user member is recorded
-- as the user alone ('user'); 'members' is left for the other member types (contacts,
-- devices, ...), whose rows only the staging check looks at. The incremental transform
-- recomputes a group's flattened memberships whole only for a nesting change below it, or when
-- its inclusion changed (sql/transform/groups.sql, sp_groups_flipped), not each time Graph's
-- delta lists the group again because a member joined or left (the extraction rewrites the
-- group's row then): those pairs follow from the members' own recompute ('user').
CREATE OR REPLACE FUNCTION sync.touch_members() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO sync.touched (tenant, kind, id)
    SELECT DISTINCT x.tenant, x.kind, x.id
    FROM changed c
    CROSS JOIN LATERAL (VALUES
        (c.tenant, CASE c.member_type WHEN 'group' THEN 'nesting' WHEN 'user' THEN NULL
                   ELSE 'members' END, c.group_id),
        (c.tenant, 'user', CASE WHEN c.member_type = 'user' THEN c.member_id END)
    ) AS x (tenant, kind, id)
    WHERE x.kind IS NOT NULL AND x.id IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM sync.touched f
                      WHERE f.tenant = x.tenant AND f.kind = 'full' AND f.id = '')
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;

-- sync.staged_rows: each tenant's rows in each staging table, kept by statement triggers in the
-- writers' own transactions, so that a run reads its counts instead of counting 1.4 M
-- memberships again (the extraction's reconciliation with Graph's $count, the statistics
-- check, the daily staging checks). A whole check counts the rows themselves against these
-- (checks/staging.py), so a count that drifted cannot hide. Counted once here from the rows
-- as they are, with writers held off (SHARE locks) until the triggers are in place.
CREATE TABLE IF NOT EXISTS sync.staged_rows (
    tenant text NOT NULL,
    tbl    text NOT NULL,
    n      bigint NOT NULL,
    PRIMARY KEY (tenant, tbl)
);

CREATE OR REPLACE FUNCTION sync.count_staged() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO sync.staged_rows AS r (tenant, tbl, n)
    SELECT c.tenant, TG_TABLE_NAME, CASE TG_OP WHEN 'DELETE' THEN -count(*) ELSE count(*) END
    FROM changed c
    GROUP BY c.tenant
    ON CONFLICT (tenant, tbl) DO UPDATE SET n = r.n + EXCLUDED.n;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION sync.uncount_staged() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM sync.staged_rows WHERE tbl = TG_TABLE_NAME;
    RETURN NULL;
END $$;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['users', 'groups', 'group_members', 'subscribed_skus',
                             'user_licences', 'user_managers'] LOOP
        EXECUTE 'LOCK TABLE staging.' || quote_ident(t) || ' IN SHARE MODE';
        PERFORM sync.install_statement_triggers(('staging.' || t)::regclass, 'counted',
                                                ARRAY['insert', 'delete'],
                                                'sync.count_staged', 'sync.uncount_staged');
        EXECUTE 'DELETE FROM sync.staged_rows WHERE tbl = ' || quote_literal(t);
        EXECUTE 'INSERT INTO sync.staged_rows (tenant, tbl, n) SELECT tenant, '
            || quote_literal(t) || ', count(*) FROM staging.' || quote_ident(t)
            || ' GROUP BY tenant';
    END LOOP;
END $$;

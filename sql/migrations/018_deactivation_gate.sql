-- The deactivation gate (issue 16, sync_pipeline/load/gate.py, sql/load/gate.sql): what the
-- sync withholds from a diff instead of applying it, what it remembers between syncs, and the
-- decisions people take on it. Idempotent.

-- What the gate withheld at the last apply, kept between syncs: per person out of scope, the
-- grace period's clock (since, reads); per withheld change, since when and why. Written only
-- by an apply (never by a test sync or a blocked run), from that run's sync.diff_gate; a row
-- goes when its change no longer comes up (applied, or no longer wanted by Graph).
CREATE TABLE IF NOT EXISTS sync.withheld (
    tenant        text NOT NULL,
    kind          text NOT NULL,    -- as sync.diff_gate.kind
    key           text NOT NULL,    -- the sync.diffs key
    label         text,
    user_id       bigint,           -- app.users.id
    group_id      bigint,           -- app.groups.id (memberships)
    status        text NOT NULL,    -- pending | held | protected | rejected | with_person
                                    -- | app_decision
    reason        text,
    since         timestamptz NOT NULL,  -- deactivate: the first complete read that found the
                                         -- person out of scope; else first withheld
    reads         integer,          -- deactivate: consecutive complete reads out of scope
    last_read_at  timestamptz,      -- deactivate: the read counted last (staging.extractions)
    held_since    timestamptz,      -- first held (over a limit, or a conflict)
    notified_at   timestamptz,      -- when the tenant's admin was emailed about it
    updated_run   bigint,
    PRIMARY KEY (tenant, kind, key)
);
CREATE INDEX IF NOT EXISTS withheld_user ON sync.withheld (tenant, user_id);

-- A person's decision on a withheld change: approved (applies at the next sync, or at once with
-- `approve --apply`) or rejected (never applied while the change keeps coming up). Each
-- decision is also a run of its own with a sync.changes row (entity 'decision'), so that
-- `history` shows it and `undo` reverts it. A decision goes when its change no longer comes
-- up (applied, or Graph changed).
CREATE TABLE IF NOT EXISTS sync.decisions (
    tenant      text NOT NULL,
    kind        text NOT NULL,
    key         text NOT NULL,
    label       text,
    user_id     bigint,
    decision    text NOT NULL CHECK (decision IN ('approved', 'rejected')),
    decided_by  text NOT NULL,
    decided_at  timestamptz NOT NULL DEFAULT now(),
    note        text,
    run_id      bigint REFERENCES sync.runs (id),
    PRIMARY KEY (tenant, kind, key)
);

-- Per run, every change the gate looked at and what it made of it (status): applied ones
-- ('due', 'approved', 'allowed') stay in sync.diffs, withheld ones ('pending', 'held',
-- 'protected', 'rejected', 'with_person', 'app_decision', 'address_in_use') were taken out
-- of it; 'recheck' rows (a report whose manager waits) stay, to be diffed again next time.
-- The report, the metadata, `pending` and `held` read it; the apply turns it into
-- sync.withheld.
CREATE TABLE IF NOT EXISTS sync.diff_gate (
    tenant        text NOT NULL,
    run_id        bigint NOT NULL REFERENCES sync.runs (id) ON DELETE CASCADE,
    kind          text NOT NULL,    -- deactivate | membership_remove | reactivate | membership_add
    key           text NOT NULL,    -- the sync.diffs key
    label         text,
    user_app_id   bigint,
    group_app_id  bigint,
    user_external_id  text,
    group_external_id text,
    status        text NOT NULL,
    reason        text,             -- why out of scope (deactivate), why held (others)
    since         timestamptz,
    reads         integer,
    due_at        timestamptz,      -- a pending person: deactivated at the first read after it
    read_at       timestamptz,      -- deactivate: the read this diff followed
    PRIMARY KEY (run_id, kind, key)
);
CREATE INDEX IF NOT EXISTS diff_gate_tenant ON sync.diff_gate (tenant, run_id);

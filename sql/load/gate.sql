-- The deactivation gate (load/gate.py): after the diff, before anything is checked, reported
-- or applied. Every deactivation, every removal from a group that loses a large share of its
-- members, and every reactivation or re-add of something the app itself undid is classified in
-- sync.diff_gate; what is withheld is taken out of sync.diffs, so that what a test sync
-- reports and what the apply writes stay exactly sync.diffs. Nothing here writes the state
-- kept between syncs (sync.withheld, sync.decisions): the apply does, in its own
-- transaction (load/gate_apply.sql), so that a test sync or a blocked run moves no clock.
-- Statements end with a semicolon at the end of a line (rules.run_script).
DELETE FROM sync.diff_gate WHERE tenant = :tenant AND run_id = :run_id;
-- The read this diff follows: its users' extraction time (now when none is recorded).
DROP TABLE IF EXISTS pg_temp.sp_read;
CREATE TEMP TABLE sp_read ON COMMIT DROP AS
SELECT coalesce(
    (SELECT e.extracted_at FROM staging.extractions e
     WHERE e.tenant = :tenant AND e.entity = 'users'),
    now()) AS read_at;
-- 1. Deactivations. Reads count once per extraction: a second diff of the same read (the apply
-- of a run whose diff was planned in an earlier step) does not count it again.
INSERT INTO sync.diff_gate (
    tenant, run_id, kind, key, label, user_app_id, user_external_id, status, reason, since,
    reads, due_at, read_at)
SELECT
    :tenant, :run_id, 'deactivate', d.key, d.label, d.app_id, d.key,
    CASE
        WHEN lower(d.label) = ANY (CAST(:protected AS text[]))
          OR d.key = ANY (CAST(:protected AS text[])) THEN 'protected'
        WHEN dc.decision = 'rejected' THEN 'rejected'
        WHEN dc.decision = 'approved' THEN 'approved'
        -- held once, held until a person decides: an approval of some never lets the
        -- others through because they alone are now within the limit
        WHEN p.held_since IS NOT NULL THEN CASE WHEN CAST(:allow_mass AS boolean) THEN 'allowed'
                                         ELSE 'held' END
        -- deleted for good: not in Graph, and no memberships kept for a restore (a user
        -- soft-deleted, restorable for 30 days, keeps the grace period)
        WHEN CAST(:deleted_skip_grace AS boolean) AND s.graph_id IS NULL AND NOT soft.deleted
            THEN 'due'
        WHEN c.reads < CAST(:grace_reads AS integer)
          OR r.read_at < c.since + make_interval(secs => CAST(:grace_hours AS float8) * 3600)
            THEN 'pending'
        ELSE 'due' END,
    coalesce(s.reason, CASE WHEN soft.deleted THEN 'soft_deleted' ELSE 'not_in_graph' END),
    c.since, c.reads,
    c.since + make_interval(secs => CAST(:grace_hours AS float8) * 3600), r.read_at
FROM sync.diffs d
CROSS JOIN sp_read r
LEFT JOIN sync.withheld p ON p.tenant = :tenant AND p.kind = 'deactivate' AND p.key = d.key
LEFT JOIN sync.decisions dc ON dc.tenant = :tenant AND dc.kind = 'deactivate' AND dc.key = d.key
LEFT JOIN sync.snapshot_users s ON s.tenant = :tenant AND s.graph_id = d.key
CROSS JOIN LATERAL (
    SELECT EXISTS (
        SELECT 1 FROM staging.suspended_members sm
        WHERE sm.tenant = :tenant AND sm.owner_id = d.key AND sm.owner_kind = 'user'
    ) AS deleted
) soft
CROSS JOIN LATERAL (
    SELECT coalesce(p.since, r.read_at) AS since,
           coalesce(p.reads, 0)
             + CASE WHEN p.last_read_at IS NULL OR p.last_read_at < r.read_at THEN 1 ELSE 0 END
             AS reads
) c
WHERE d.tenant = :tenant AND d.run_id = :run_id AND d.entity = 'user'
  AND d.action = 'deactivate';
-- Over the safety limit (max_deactivations, or max_deactivation_percent of the active users;
-- no percentage before there are active users), every due deactivation is held, unless the
-- operator allowed a mass deactivation for this run. Approved ones are a person's decision:
-- they apply and do not count.
UPDATE sync.diff_gate g
SET status = CASE WHEN CAST(:allow_mass AS boolean) THEN 'allowed' ELSE 'held' END
FROM (
    SELECT count(*) AS n FROM sync.diff_gate
    WHERE tenant = :tenant AND run_id = :run_id AND kind = 'deactivate' AND status = 'due'
) due
WHERE g.tenant = :tenant AND g.run_id = :run_id AND g.kind = 'deactivate' AND g.status = 'due'
  AND (due.n > CAST(:max_count AS integer)
       OR (CAST(:active AS integer) > 0
           AND 100.0 * due.n / CAST(:active AS integer) > CAST(:max_percent AS float8)));
-- 2. Reactivations of users the app deactivated itself: the sync reactivates only a user whose
-- deactivation it made, by a sync or an undo (a sync.changes row of its own with the same
-- deactivated_at). Anyone else stays inactive; the conflict is reported and left to
-- `sync-pipeline approve`.
INSERT INTO sync.diff_gate (
    tenant, run_id, kind, key, label, user_app_id, user_external_id, status, reason, since)
SELECT :tenant, :run_id, 'reactivate', d.key, d.label, d.app_id, d.key,
       CASE dc.decision WHEN 'approved' THEN 'approved' ELSE 'app_decision' END,
       'deactivated in the app', u.deactivated_at
FROM sync.diffs d
JOIN app.users u ON u.tenant = :tenant AND u.id = d.app_id
LEFT JOIN sync.decisions dc
  ON dc.tenant = :tenant AND dc.kind = 'reactivate' AND dc.key = d.key
WHERE d.tenant = :tenant AND d.run_id = :run_id AND d.entity = 'user'
  AND d.action = 'reactivate'
  AND NOT EXISTS (
      SELECT 1
      FROM sync.changes ch
      WHERE ch.tenant = :tenant AND ch.user_id = u.id AND ch.entity = 'user'
        AND (ch.after ->> 'deactivated_at') IS NOT NULL
        AND CAST(ch.after ->> 'deactivated_at' AS timestamptz) = u.deactivated_at);
-- 2b. An address still held by an active user cannot go to someone else yet (one active user
-- per address, users_active_email): the create, update or reactivation that would give it
-- waits, with a reason, until the holder lets it go. Two kinds of holder: a person whose
-- deactivation is withheld, and an active app user the sync does not manage (a manual user
-- it does not adopt here: one with an id from elsewhere, or one an update would collide
-- with). A withheld update keeps its user's current address held in turn, so the chain is
-- followed (an address handed on from one person to the next). Odd rows never stop a
-- tenant: without this, the apply failed on the unique index and nobody was synced.
INSERT INTO sync.diff_gate (
    tenant, run_id, kind, key, label, user_app_id, user_external_id, status, reason)
WITH RECURSIVE held (email, holder, why, depth) AS (
    SELECT lower(u.email), coalesce(u.email, g.label), ', whose deactivation is withheld', 0
    FROM sync.diff_gate g
    JOIN app.users u ON u.tenant = :tenant AND u.id = g.user_app_id AND u.is_active
    WHERE g.run_id = :run_id AND g.kind = 'deactivate'
      AND g.status IN ('pending', 'held', 'protected', 'rejected')
    UNION
    SELECT lower(u.email), u.email,
           ', an active user the sync does not manage (app user ' || u.id
           || '): change its address or deactivate it in the app', 0
    FROM sync.diffs d
    JOIN app.users u
      ON u.tenant = :tenant AND u.is_active AND u.source = 'manual'
     AND lower(u.email) = lower(CASE d.action WHEN 'update' THEN d.after ->> 'email'
                                              ELSE d.label END)
    WHERE d.tenant = :tenant AND d.run_id = :run_id AND d.entity = 'user'
      AND d.action IN ('create', 'update', 'reactivate')
      AND u.id IS DISTINCT FROM d.app_id
      AND NOT EXISTS (
          SELECT 1 FROM sync.diffs a
          WHERE a.tenant = :tenant AND a.run_id = :run_id AND a.entity = 'user'
            AND a.action = 'adopt' AND a.app_id = u.id)
    UNION
    SELECT lower(u.email), h.holder, h.why, h.depth + 1
    FROM held h
    JOIN sync.diffs d
      ON d.tenant = :tenant AND d.run_id = :run_id AND d.entity = 'user'
     AND d.action = 'update' AND lower(d.after ->> 'email') = h.email
    JOIN app.users u ON u.tenant = :tenant AND u.id = d.app_id AND u.is_active
    WHERE h.depth < 100
)
SELECT DISTINCT ON (d.action, d.key)
       :tenant, :run_id, d.action, d.key, d.label, d.app_id, d.key, 'address_in_use',
       'the address ' || d.label || ' is still held by ' || h.holder || h.why
FROM sync.diffs d
-- the address the change makes active: a create's or a reactivation's own (the label is the
-- snapshot's address), an update's new one
JOIN held h ON h.email = lower(CASE d.action WHEN 'update' THEN d.after ->> 'email'
                                             ELSE d.label END)
WHERE d.tenant = :tenant AND d.run_id = :run_id AND d.entity = 'user'
  AND d.action IN ('create', 'update', 'reactivate')
  -- nothing held, nothing to look at (an uncorrelated guard, evaluated once: a first load's
  -- creates are not read for it)
  AND EXISTS (SELECT 1 FROM held)
ORDER BY d.action, d.key, h.depth
ON CONFLICT (run_id, kind, key) DO NOTHING;
-- 2c. Reports of a user whose create waits (2b) cannot get that manager yet: the manager set
-- (or the report's own create) applies without it. They are marked `recheck`, kept with the
-- withheld changes, so that the next incremental diff looks at them again and sets the
-- manager once it exists; nothing is taken out of the diff.
INSERT INTO sync.diff_gate (
    tenant, run_id, kind, key, label, user_app_id, user_external_id, status, reason)
SELECT DISTINCT ON (d.key)
       :tenant, :run_id, 'manager', d.key, d.label, d.app_id, d.key, 'recheck',
       'manager ' || g.label || ' not created yet'
FROM sync.diffs d
JOIN sync.snapshot_users s ON s.tenant = :tenant AND s.graph_id = d.key
JOIN sync.diff_gate g
  ON g.run_id = :run_id AND g.kind = 'create' AND g.status = 'address_in_use'
 AND g.key = s.manager_graph_id
WHERE d.tenant = :tenant AND d.run_id = :run_id
  AND ((d.entity = 'manager' AND d.action = 'set')
       OR (d.entity = 'user' AND d.action = 'create'))
  AND EXISTS (SELECT 1 FROM sync.diff_gate x
              WHERE x.run_id = :run_id AND x.kind = 'create' AND x.status = 'address_in_use')
ORDER BY d.key
ON CONFLICT (run_id, kind, key) DO NOTHING;
-- The joins below pair a run's gate rows with its diff rows, a few thousand each at most;
-- without statistics for this run's rows (new run ids, and autovacuum behind or off) the
-- planner takes them for one row each and joins them by nested loops: 5,000 x 5,000 key
-- comparisons, 7-19 s for an unchanged 100k sync (benchmarks/sync.py). Hash joins cost what
-- the rows are, whatever the estimates, so nested loops are off until the gate's end.
SELECT set_config('enable_nestloop', 'off', true);
-- 3. The memberships of withheld people stay as they are: removals of someone whose
-- deactivation is withheld, and adds for someone whose reactivation or create is, leave the
-- diff with them. One statement per case, each a join driven by the run's few gate rows
-- (an OR of the three was one join over every membership row of the run, seconds at 100k),
-- and the adds guarded: a first load's membership adds are read only when a create waits.
INSERT INTO sync.diff_gate (
    tenant, run_id, kind, key, label, user_app_id, group_app_id, user_external_id,
    group_external_id, status, reason)
SELECT :tenant, :run_id, 'membership_' || d.action, d.key, d.label, d.user_app_id,
       d.group_app_id, d.user_external_id, d.group_external_id, 'with_person',
       g.kind || ' ' || g.status
FROM sync.diff_gate g
JOIN sync.diffs d
  ON d.tenant = :tenant AND d.run_id = :run_id AND d.entity = 'membership'
 AND d.action = 'remove' AND d.user_app_id = g.user_app_id
WHERE g.run_id = :run_id AND g.kind = 'deactivate'
  AND g.status IN ('pending', 'held', 'protected', 'rejected')
ON CONFLICT (run_id, kind, key) DO NOTHING;
INSERT INTO sync.diff_gate (
    tenant, run_id, kind, key, label, user_app_id, group_app_id, user_external_id,
    group_external_id, status, reason)
SELECT :tenant, :run_id, 'membership_' || d.action, d.key, d.label, d.user_app_id,
       d.group_app_id, d.user_external_id, d.group_external_id, 'with_person',
       g.kind || ' ' || g.status
FROM sync.diff_gate g
JOIN sync.diffs d
  ON d.tenant = :tenant AND d.run_id = :run_id AND d.entity = 'membership'
 AND d.action = 'add' AND d.user_app_id = g.user_app_id
WHERE g.run_id = :run_id AND g.kind = 'reactivate'
  AND g.status IN ('app_decision', 'address_in_use')
  AND EXISTS (SELECT 1 FROM sync.diff_gate x
              WHERE x.run_id = :run_id AND x.kind = 'reactivate'
                AND x.status IN ('app_decision', 'address_in_use'))
ON CONFLICT (run_id, kind, key) DO NOTHING;
-- a user not created yet has no app id: its adds wait with it
INSERT INTO sync.diff_gate (
    tenant, run_id, kind, key, label, user_app_id, group_app_id, user_external_id,
    group_external_id, status, reason)
SELECT :tenant, :run_id, 'membership_' || d.action, d.key, d.label, d.user_app_id,
       d.group_app_id, d.user_external_id, d.group_external_id, 'with_person',
       g.kind || ' ' || g.status
FROM sync.diff_gate g
JOIN sync.diffs d
  ON d.tenant = :tenant AND d.run_id = :run_id AND d.entity = 'membership'
 AND d.action = 'add' AND d.user_app_id IS NULL AND d.user_external_id = g.user_external_id
WHERE g.run_id = :run_id AND g.kind = 'create' AND g.status = 'address_in_use'
  AND EXISTS (SELECT 1 FROM sync.diff_gate x
              WHERE x.run_id = :run_id AND x.kind = 'create' AND x.status = 'address_in_use')
ON CONFLICT (run_id, kind, key) DO NOTHING;
-- 4. Removals from a group of people who stay: held when the group (of at least
-- group_removal_min_members members in the app) loses more than max_group_removal_percent of
-- them in this sync. A decision on a pair holds whatever the share.
DROP TABLE IF EXISTS pg_temp.sp_gone;
CREATE TEMP TABLE sp_gone ON COMMIT DROP AS
SELECT d.key, d.label, d.group_app_id, d.user_app_id, d.user_external_id, d.group_external_id,
       count(*) OVER (PARTITION BY d.group_app_id) AS n
FROM sync.diffs d
WHERE d.tenant = :tenant AND d.run_id = :run_id AND d.entity = 'membership'
  AND d.action = 'remove'
  AND NOT EXISTS (
      SELECT 1 FROM sync.diff_gate g
      WHERE g.run_id = :run_id AND g.kind = 'deactivate' AND g.user_app_id = d.user_app_id);
INSERT INTO sync.diff_gate (
    tenant, run_id, kind, key, label, user_app_id, group_app_id, user_external_id,
    group_external_id, status, reason, since)
SELECT :tenant, :run_id, 'membership_remove', x.key, x.label, x.user_app_id, x.group_app_id,
       x.user_external_id, x.group_external_id,
       CASE dc.decision WHEN 'rejected' THEN 'rejected'
                        WHEN 'approved' THEN 'approved'
                        ELSE CASE WHEN CAST(:allow_mass AS boolean) THEN 'allowed'
                                  ELSE 'held' END END,
       x.n || ' of ' || m.members || ' members removed in one sync',
       w.since
FROM sp_gone x
LEFT JOIN sync.decisions dc
  ON dc.tenant = :tenant AND dc.kind = 'membership_remove' AND dc.key = x.key
LEFT JOIN sync.withheld w
  ON w.tenant = :tenant AND w.kind = 'membership_remove' AND w.key = x.key
JOIN (
    -- each group's members counted once (an index-only count per group with removals)
    SELECT g.group_app_id, c.members
    FROM (SELECT DISTINCT group_app_id FROM sp_gone) g
    CROSS JOIN LATERAL (
        SELECT count(*) AS members FROM app.group_members gm
        WHERE gm.tenant = :tenant AND gm.group_id = g.group_app_id
    ) c
) m ON m.group_app_id = x.group_app_id
WHERE dc.decision IS NOT NULL
   OR w.held_since IS NOT NULL  -- held until a person decides, as deactivations are
   OR (m.members >= CAST(:group_min AS integer)
       AND 100.0 * x.n / m.members > CAST(:group_percent AS float8));
-- 5. Adds of memberships a person removed in the app, in a group the sync owns: the last
-- change the sync (or an undo) recorded for the pair is its own add, so the pair is missing
-- because the app removed it. Not re-added; reported.
INSERT INTO sync.diff_gate (
    tenant, run_id, kind, key, label, user_app_id, group_app_id, user_external_id,
    group_external_id, status, reason)
SELECT :tenant, :run_id, 'membership_add', d.key, d.label, d.user_app_id, d.group_app_id,
       d.user_external_id, d.group_external_id,
       CASE dc.decision WHEN 'approved' THEN 'approved' ELSE 'app_decision' END,
       'removed in the app'
FROM sync.diffs d
LEFT JOIN sync.decisions dc
  ON dc.tenant = :tenant AND dc.kind = 'membership_add' AND dc.key = d.key
CROSS JOIN LATERAL (
    SELECT ch.action
    FROM sync.changes ch
    WHERE ch.tenant = :tenant AND ch.user_id = d.user_app_id AND ch.group_id = d.group_app_id
      AND ch.entity = 'membership'
    ORDER BY ch.id DESC
    LIMIT 1
) last
WHERE d.tenant = :tenant AND d.run_id = :run_id AND d.entity = 'membership'
  AND d.action = 'add' AND d.user_app_id IS NOT NULL AND d.group_app_id IS NOT NULL
  AND last.action = 'add'
ON CONFLICT (run_id, kind, key) DO NOTHING;
-- What is withheld leaves the diff: one DELETE per kind, each on the run's rows of one
-- (entity, action) by the diff's index and only when the gate withheld something of that kind
-- (a CASE mapping kinds to (entity, action) kept the index from being used and read
-- sync.diffs whole).
DELETE FROM sync.diffs d
USING sync.diff_gate g
WHERE d.tenant = :tenant AND d.run_id = :run_id AND d.entity = 'user'
  AND d.action = 'deactivate'
  AND g.run_id = :run_id AND g.kind = 'deactivate' AND g.key = d.key
  AND g.status IN ('pending', 'held', 'protected', 'rejected', 'with_person', 'app_decision',
                   'address_in_use')
  AND EXISTS (SELECT 1 FROM sync.diff_gate x
              WHERE x.run_id = :run_id AND x.kind = 'deactivate');
DELETE FROM sync.diffs d
USING sync.diff_gate g
WHERE d.tenant = :tenant AND d.run_id = :run_id AND d.entity = 'user'
  AND d.action = 'reactivate'
  AND g.run_id = :run_id AND g.kind = 'reactivate' AND g.key = d.key
  AND g.status IN ('pending', 'held', 'protected', 'rejected', 'with_person', 'app_decision',
                   'address_in_use')
  AND EXISTS (SELECT 1 FROM sync.diff_gate x
              WHERE x.run_id = :run_id AND x.kind = 'reactivate');
DELETE FROM sync.diffs d
USING sync.diff_gate g
WHERE d.tenant = :tenant AND d.run_id = :run_id AND d.entity = 'user'
  AND d.action = 'create'
  AND g.run_id = :run_id AND g.kind = 'create' AND g.key = d.key
  AND g.status IN ('pending', 'held', 'protected', 'rejected', 'with_person', 'app_decision',
                   'address_in_use')
  AND EXISTS (SELECT 1 FROM sync.diff_gate x
              WHERE x.run_id = :run_id AND x.kind = 'create');
DELETE FROM sync.diffs d
USING sync.diff_gate g
WHERE d.tenant = :tenant AND d.run_id = :run_id AND d.entity = 'user'
  AND d.action = 'update'
  AND g.run_id = :run_id AND g.kind = 'update' AND g.key = d.key
  AND g.status IN ('pending', 'held', 'protected', 'rejected', 'with_person', 'app_decision',
                   'address_in_use')
  AND EXISTS (SELECT 1 FROM sync.diff_gate x
              WHERE x.run_id = :run_id AND x.kind = 'update');
DELETE FROM sync.diffs d
USING sync.diff_gate g
WHERE d.tenant = :tenant AND d.run_id = :run_id AND d.entity = 'membership'
  AND d.action = 'remove'
  AND g.run_id = :run_id AND g.kind = 'membership_remove' AND g.key = d.key
  AND g.status IN ('pending', 'held', 'protected', 'rejected', 'with_person', 'app_decision',
                   'address_in_use')
  AND EXISTS (SELECT 1 FROM sync.diff_gate x
              WHERE x.run_id = :run_id AND x.kind = 'membership_remove');
DELETE FROM sync.diffs d
USING sync.diff_gate g
WHERE d.tenant = :tenant AND d.run_id = :run_id AND d.entity = 'membership'
  AND d.action = 'add'
  AND g.run_id = :run_id AND g.kind = 'membership_add' AND g.key = d.key
  AND g.status IN ('pending', 'held', 'protected', 'rejected', 'with_person', 'app_decision',
                   'address_in_use')
  AND EXISTS (SELECT 1 FROM sync.diff_gate x
              WHERE x.run_id = :run_id AND x.kind = 'membership_add');
SELECT set_config('enable_nestloop', 'on', true)

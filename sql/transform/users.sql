-- Settings applied to staging.users: one row per Graph user with its resolved address and every
-- exclusion reason, in precedence order (see rules.REASONS). Duplicate addresses are settled
-- among the users no other rule excludes. Addresses are compared by their key
-- (sync.address_key, sync_pipeline/addresses.py: NFKC, Unicode whitespace trimmed,
-- lower-cased), exactly as the snapshot check compares them, and stored in their clean form.
-- Manager cycles are cut here (sp_manager_cuts). Statements end with a semicolon at the end
-- of a line.
-- Incremental (:incremental, sql/transform/incremental.sql): only the users in sp_recompute are
-- resolved and ranked here. The rest of the work runs over them and the users around them
-- (sp_around), whose rows are copied from the snapshot, which already holds what this file
-- would compute for them: everything below then gives the same rows for those users as the
-- full path, and every other user's row cannot have changed (see sp_around).
CREATE TEMP TABLE IF NOT EXISTS sp_recompute (id text PRIMARY KEY) ON COMMIT DROP;
DROP TABLE IF EXISTS pg_temp.sp_scoped;
CREATE TEMP TABLE sp_scoped ON COMMIT DROP AS
SELECT DISTINCT gm.member_id AS user_id
FROM (
    -- The scope groups themselves (sp_closure leaves out the identity pairs), then every group
    -- nested below them.
    SELECT g.id AS descendant
    FROM staging.groups g
    WHERE g.tenant = :tenant AND g.id = ANY (CAST(:scope_group_ids AS text[]))
    UNION ALL
    SELECT c.descendant FROM sp_closure c WHERE c.ancestor = ANY (CAST(:scope_group_ids AS text[]))
) s
JOIN staging.group_members gm
  ON gm.tenant = :tenant AND gm.group_id = s.descendant AND gm.member_type = 'user'
WHERE NOT CAST(:incremental AS boolean)
   OR gm.member_id IN (SELECT r.id FROM pg_temp.sp_recompute r);
DROP TABLE IF EXISTS pg_temp.sp_users;
CREATE TEMP TABLE sp_users ON COMMIT DROP AS
WITH resolved AS MATERIALIZED (
    SELECT
        u.id, u.display_name, u.given_name, u.surname, u.job_title, u.department,
        u.user_type, u.created_date_time,
        CASE CAST(:email_method AS text)
            WHEN 'upn' THEN a.upn
            WHEN 'mail' THEN a.mail
            WHEN 'mail_then_upn' THEN
                CASE WHEN a.mail ~ CAST(:address_re AS text) THEN a.mail
                     ELSE coalesce(a.upn, a.mail) END
            WHEN 'primary_smtp' THEN a.smtp
            WHEN 'primary_smtp_then_upn' THEN
                CASE WHEN a.smtp ~ CAST(:address_re AS text) THEN a.smtp
                     ELSE coalesce(a.upn, a.smtp) END
        END AS address,
        coalesce(u.account_enabled, true) AS enabled,
        -- Graph's mailboxSettings.userPurpose as last read (migration 024); NULL: not read
        -- or unreadable (no mailbox), which never excludes anyone
        (SELECT p.purpose FROM staging.user_purposes p
          WHERE p.tenant = :tenant AND p.user_id = u.id) AS mailbox_purpose,
        (jsonb_typeof(u.assigned_licenses) = 'array' AND jsonb_array_length(u.assigned_licenses) > 0)
          OR EXISTS (SELECT 1 FROM staging.user_licences l
                      WHERE l.tenant = :tenant AND l.user_id = u.id) AS licensed
    FROM staging.users u
    CROSS JOIN LATERAL (
        SELECT
            -- clean forms (migration 012): NFKC, Unicode whitespace trimmed, NULL if empty
            sync.clean_address(u.user_principal_name) AS upn,
            sync.clean_address(u.mail) AS mail,
            (SELECT sync.clean_address(substr(p.v, 6))
               FROM jsonb_array_elements_text(
                        CASE WHEN jsonb_typeof(u.proxy_addresses) = 'array'
                             THEN u.proxy_addresses ELSE '[]' END) WITH ORDINALITY AS p (v, n)
              WHERE left(p.v, 5) = 'SMTP\:'  -- the primary address: upper-case prefix exactly
              ORDER BY p.n LIMIT 1) AS smtp
        OFFSET 0  -- keep the subquery from being inlined into every use of its columns
    ) a
    WHERE u.tenant = :tenant
      AND (NOT CAST(:incremental AS boolean)
           OR u.id IN (SELECT r.id FROM pg_temp.sp_recompute r))
), flagged AS MATERIALIZED (
    SELECT
        r.*,
        array_remove(ARRAY[
            CASE WHEN CAST(:user_scope AS text) = 'selected_groups'
                  AND NOT EXISTS (SELECT 1 FROM sp_scoped s WHERE s.user_id = r.id)
                 THEN 'out_of_scope' END,
            CASE WHEN NOT r.enabled AND NOT CAST(:include_disabled AS boolean)
                 THEN 'disabled' END,
            CASE WHEN lower(r.user_type) = 'guest' AND NOT CAST(:include_guests AS boolean)
                 THEN 'guest' END,
            CASE WHEN r.mailbox_purpose = ANY (CAST(:exclude_mailbox_types AS text[]))
                 THEN 'mailbox_type' END,
            CASE WHEN NOT r.licensed AND CAST(:exclude_unlicensed AS boolean)
                 THEN 'unlicensed' END,
            CASE WHEN NOT r.address_ok THEN 'no_email' END,
            CASE WHEN r.address_ok
                  AND (r.address_key = ANY (ARRAY(
                           SELECT sync.address_key(e)
                           FROM unnest(CAST(:deny_addresses AS text[])) AS e))
                       OR split_part(r.address_key, '@', 2) = ANY (ARRAY(
                           SELECT sync.address_key(d)
                           FROM unnest(CAST(:deny_domains AS text[])) AS d)))
                 THEN 'deny_list' END
        ], NULL) AS pre_reasons
    FROM (SELECT r0.*, coalesce(r0.address ~ CAST(:address_re AS text), false) AS address_ok,
                 sync.address_key(r0.address) AS address_key
            FROM resolved r0) r
), ranked AS (
    SELECT
        f.*,
        row_number() OVER (
            PARTITION BY CASE WHEN cardinality(f.pre_reasons) = 0 THEN f.address_key END
            ORDER BY f.enabled DESC, f.licensed DESC, f.created_date_time ASC NULLS LAST,
                     f.id COLLATE "C" ASC
        ) AS address_rank
    FROM flagged f
)
SELECT
    k.id, k.address, k.display_name, k.given_name, k.surname, k.job_title, k.department,
    k.pre_reasons
      || CASE WHEN cardinality(k.pre_reasons) = 0 AND k.address_rank > 1
              THEN ARRAY['duplicate_email'] ELSE '{}'::text[] END AS reasons,
    cardinality(k.pre_reasons) = 0 AND k.address_rank = 1 AS included
FROM ranked k;
-- Incremental: the users whose row may change although they were not resolved again, and
-- everyone above them. A user's row depends, besides their own staging rows, only on their
-- manager's row (manager_graph_id, manager_note) and on the manager cycle they may be on.
-- So the seeds are the recomputed users, their reports, and the members cut earlier from a
-- cycle through a recomputed user (it may be broken now). A cycle that is new now holds a
-- changed link or a user whose inclusion changed, so a recomputed user, and lies above them.
-- Walking up from the seeds by the staged links (whatever the inclusion: a superset) reaches
-- every manager the statements below look at, so the cycle walk over sp_users sees every
-- cycle above a seed whole.
DROP TABLE IF EXISTS pg_temp.sp_around;
CREATE TEMP TABLE sp_around ON COMMIT DROP AS
WITH RECURSIVE seeds (id) AS (
    SELECT r.id FROM pg_temp.sp_recompute r WHERE CAST(:incremental AS boolean)
    UNION
    SELECT um.user_id
    FROM staging.user_managers um
    WHERE CAST(:incremental AS boolean) AND um.tenant = :tenant
      AND um.manager_id IN (SELECT r.id FROM pg_temp.sp_recompute r)
    UNION
    SELECT s.graph_id
    FROM sync.snapshot_users s
    WHERE CAST(:incremental AS boolean) AND s.tenant = :tenant
      AND starts_with(s.manager_note, 'manager_cycle:')  -- index snapshot_users_cycle_cut
      AND string_to_array(substr(s.manager_note, 15), ' ')
          && ARRAY(SELECT r.id FROM pg_temp.sp_recompute r)
), up (id) AS (
    SELECT s.id FROM seeds s
    UNION
    SELECT um.manager_id
    FROM up
    JOIN staging.user_managers um ON um.tenant = :tenant AND um.user_id = up.id
)
SELECT up.id FROM up;
INSERT INTO sp_users (
    id, address, display_name, given_name, surname, job_title, department, reasons, included)
SELECT s.graph_id, s.email, s.display_name, s.first_name, s.last_name, s.job_title,
       s.department, s.reasons, s.included
FROM sync.snapshot_users s
WHERE CAST(:incremental AS boolean) AND s.tenant = :tenant
  AND s.graph_id IN (SELECT a.id FROM sp_around a)
  AND NOT EXISTS (SELECT 1 FROM pg_temp.sp_recompute r WHERE r.id = s.graph_id);
CREATE UNIQUE INDEX ON sp_users (id);
ANALYZE sp_users;
-- The manager links the snapshot would hold: an imported user under an imported manager.
DROP TABLE IF EXISTS pg_temp.sp_links;
CREATE TEMP TABLE sp_links ON COMMIT DROP AS
SELECT um.user_id, um.manager_id
FROM staging.user_managers um
JOIN sp_users u ON u.id = um.user_id AND u.included
JOIN sp_users m ON m.id = um.manager_id AND m.included
WHERE um.tenant = :tenant AND CAST(:import_managers AS boolean);
ANALYZE sp_links;
-- Manager cycles (A's manager is B and B's is A, of any length, or someone managing
-- themselves) are legal in Entra ID but not in the app. The rule (docs/checks.md): in each
-- cycle the member with the lowest Graph id keeps no manager; everyone else keeps theirs, so
-- the chain now ends at that member. One row per cut link, with the cycle in manager order
-- starting at the cut member.
-- `ends` walks down from the tops (managers without a manager), once per user: what it does
-- not reach is on a cycle or below one (each user has one manager, so UNION ALL never
-- repeats a row). Only those few rows are walked up, each until it is back at its start (it
-- is on a cycle) or at a user it has passed (it is below one).
DROP TABLE IF EXISTS pg_temp.sp_manager_cuts;
CREATE TEMP TABLE sp_manager_cuts ON COMMIT DROP AS
WITH RECURSIVE ends (id) AS (
    SELECT DISTINCT l.manager_id
    FROM sp_links l
    WHERE NOT EXISTS (SELECT 1 FROM sp_links t WHERE t.user_id = l.manager_id)
    UNION ALL
    SELECT l.user_id FROM ends e JOIN sp_links l ON l.manager_id = e.id
), loose AS MATERIALIZED (
    SELECT l.user_id, l.manager_id
    FROM sp_links l
    WHERE NOT EXISTS (SELECT 1 FROM ends e WHERE e.id = l.user_id)
), walk (start, cur, path) AS (
    SELECT l.user_id, l.manager_id, ARRAY[l.user_id] FROM loose l
    UNION ALL
    SELECT w.start, l.manager_id, w.path || w.cur
    FROM walk w
    JOIN loose l ON l.user_id = w.cur
    WHERE w.cur <> w.start AND NOT w.cur = ANY (w.path)
)
SELECT w.start AS user_id, w.path AS cycle
FROM walk w
WHERE w.cur = w.start
  AND w.start COLLATE "C" = (SELECT min(x COLLATE "C") FROM unnest(w.path) AS x);
-- The snapshot rows, then only the difference is written (deleted, changed, new), so a scheduled
-- sync over an unchanged directory rewrites nothing.
DROP TABLE IF EXISTS pg_temp.sp_snapshot_users;
CREATE TEMP TABLE sp_snapshot_users ON COMMIT DROP AS
SELECT
    u.id AS graph_id, u.included, u.reasons[1] AS reason, u.reasons, u.address AS email,
    u.display_name, u.given_name AS first_name, u.surname AS last_name, u.job_title,
    u.department,
    CASE WHEN CAST(:import_managers AS boolean) AND u.included AND m.included
              AND c.user_id IS NULL THEN m.id END
      AS manager_graph_id,
    -- why a user with a manager in Graph has none in the app (rules.MANAGER_NOTES); a cut
    -- cycle lists its members' Graph ids in manager order, space-separated
    CASE WHEN CAST(:import_managers AS boolean) AND u.included AND um.manager_id IS NOT NULL
         THEN CASE WHEN m.id IS NULL THEN 'manager_not_found'
                   WHEN NOT m.included THEN 'manager_excluded\:' || m.reasons[1]
                   WHEN c.user_id IS NOT NULL
                        THEN 'manager_cycle\:' || array_to_string(c.cycle, ' ')
              END
    END AS manager_note
FROM sp_users u
LEFT JOIN staging.user_managers um ON um.tenant = :tenant AND um.user_id = u.id
LEFT JOIN sp_users m ON m.id = um.manager_id
LEFT JOIN sp_manager_cuts c ON c.user_id = u.id;
ANALYZE sp_snapshot_users;
DELETE FROM sync.snapshot_users s
WHERE s.tenant = :tenant
  AND (NOT CAST(:incremental AS boolean)
       OR s.graph_id IN (SELECT r.id FROM pg_temp.sp_recompute r))
  AND NOT EXISTS (SELECT 1 FROM sp_snapshot_users n WHERE n.graph_id = s.graph_id);
UPDATE sync.snapshot_users s
SET included = n.included, reason = n.reason, reasons = n.reasons, email = n.email,
    display_name = n.display_name, first_name = n.first_name, last_name = n.last_name,
    job_title = n.job_title, department = n.department,
    manager_graph_id = n.manager_graph_id, manager_note = n.manager_note
FROM sp_snapshot_users n
WHERE s.tenant = :tenant AND s.graph_id = n.graph_id
  AND (s.included, s.reason, s.reasons, s.email, s.display_name, s.first_name, s.last_name,
       s.job_title, s.department, s.manager_graph_id, s.manager_note)
      IS DISTINCT FROM
      (n.included, n.reason, n.reasons, n.email, n.display_name, n.first_name, n.last_name,
       n.job_title, n.department, n.manager_graph_id, n.manager_note);
INSERT INTO sync.snapshot_users (
    tenant, graph_id, included, reason, reasons, email, display_name, first_name, last_name,
    job_title, department, manager_graph_id, manager_note)
SELECT
    :tenant, n.graph_id, n.included, n.reason, n.reasons, n.email, n.display_name,
    n.first_name, n.last_name, n.job_title, n.department, n.manager_graph_id, n.manager_note
FROM sp_snapshot_users n
ON CONFLICT (tenant, graph_id) DO NOTHING  -- the rows already there were updated just above

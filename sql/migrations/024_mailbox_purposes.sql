-- Mailbox types (tenant setting exclude_mailbox_types): each person's mailboxSettings.userPurpose
-- as Graph last answered it. Idempotent.
--
-- staging.user_purposes: one row per staged user whose purpose was asked for. `purpose` is
-- Graph's value (user, linked, shared, room, equipment, others, or a value Graph adds later),
-- NULL when it could not be read (`status` 'unreadable': 404, e.g. MailboxNotEnabledForRESTAPI
-- for a user without an Exchange Online mailbox; `code` is Graph's error code). `fingerprint`
-- is staging.purpose_fingerprint of the user's row when it was read: the extraction asks again
-- only for users without a row or whose fingerprint changed (new, or changed in this read),
-- so a daily sync asks for almost nobody. Unlike the rest of staging it survives a full read
-- (a full read rewrites every user row, mostly unchanged): purposes are read again by change,
-- not by read mode. Rows of users no longer staged are dropped by the extraction.
CREATE TABLE IF NOT EXISTS staging.user_purposes (
    tenant      text NOT NULL,
    user_id     text NOT NULL,
    purpose     text,
    status      text NOT NULL CHECK (status IN ('read', 'unreadable')),
    code        text,
    fingerprint text NOT NULL,
    read_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, user_id)
);

-- What a change of mailbox type tends to come with (a shared mailbox's licence removed, its
-- account disabled, its addresses or name changed): a user whose fingerprint moved is asked
-- again. A conversion with no directory change at all shows at the user's next change.
CREATE OR REPLACE FUNCTION staging.purpose_fingerprint(
    upn text, mail text, proxy_addresses jsonb, account_enabled boolean, user_type text,
    assigned_licenses jsonb, display_name text
) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT md5(concat_ws(chr(31), upn, mail, proxy_addresses::text,
                         account_enabled::text, user_type, assigned_licenses::text,
                         display_name))
$$;

-- A purpose written is a user touched (sync.touched, migration 014): the incremental transform
-- resolves that user again, so a purpose read in this extraction reaches the snapshot without
-- a full rebuild. A TRUNCATE forgets every snapshot state, as on the other staging tables.
DO $$
DECLARE
    ev text;
BEGIN
    FOREACH ev IN ARRAY ARRAY['insert', 'update', 'delete'] LOOP
        EXECUTE 'DROP TRIGGER IF EXISTS touched_' || ev || ' ON staging.user_purposes';
        EXECUTE 'CREATE TRIGGER touched_' || ev || ' AFTER ' || upper(ev)
            || ' ON staging.user_purposes REFERENCING '
            || CASE ev WHEN 'delete' THEN 'OLD' ELSE 'NEW' END
            || ' TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION'
            || ' sync.touch_rows(''user'', ''user_id'')';
    END LOOP;
    DROP TRIGGER IF EXISTS touched_truncate ON staging.user_purposes;
    CREATE TRIGGER touched_truncate AFTER TRUNCATE ON staging.user_purposes
        FOR EACH STATEMENT EXECUTE FUNCTION sync.forget_snapshot_state();
END $$;

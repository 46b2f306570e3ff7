-- How addresses are compared (sync_pipeline/addresses.py): the transform, the snapshot check
-- and `explain` all call these, so they cannot disagree. Idempotent (CREATE OR REPLACE).
--
-- sync.trim_space: whitespace trimmed at both ends, whitespace being every character Python's
--   str.isspace() accepts (btrim's default trims only the ASCII space; addresses.WHITESPACE is
--   the same set, and a test compares the two).
-- sync.clean_address: NFKC first (a fullwidth letter, a ligature, a no-break space become
--   their plain forms), then trimmed; what the app stores.
-- sync.address_key: the clean form lower-cased: how the app compares addresses
--   (app.users_active_email is unique on lower(email)), so lower() and not a case fold.
-- Plain SQL functions, so the planner inlines them into the set-wise statements.
CREATE OR REPLACE FUNCTION sync.trim_space(value text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT btrim(value, E'\u0009\u000a\u000b\u000c\u000d\u001c\u001d\u001e\u001f\u0020\u0085\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000') $$;
-- An ASCII value (as many bytes as characters, nearly every address) skips normalize(): NFKC
-- leaves ASCII as it is, and normalize() costs ~3 us a value even then (Postgres 15), which
-- was +0.25 s a pass over 100k addresses; trimmed of the ASCII whitespace alone, it costs
-- ~0.8 us more than lower(btrim()).
CREATE OR REPLACE FUNCTION sync.clean_address(value text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT nullif(CASE WHEN octet_length(value) = char_length(value)
                             THEN btrim(value, E'\u0009\u000a\u000b\u000c\u000d\u001c\u001d\u001e\u001f\u0020')
                             ELSE sync.trim_space(normalize(value, NFKC)) END, '') $$;
CREATE OR REPLACE FUNCTION sync.address_key(value text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT lower(sync.clean_address(value)) $$;

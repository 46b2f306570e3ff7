-- Decisions back to what they were before run :undo_of (load/decide.sql recorded each one's
-- predecessor in `before`), each recorded as a 'revert' of the undo's run.
DELETE FROM sync.decisions dc
USING sync.changes c
WHERE c.tenant = :tenant AND c.run_id = :undo_of AND c.entity = 'decision'
  AND dc.tenant = :tenant AND dc.kind = c.after ->> 'kind' AND dc.key = c.after ->> 'key';
INSERT INTO sync.decisions (
    tenant, kind, key, label, user_id, decision, decided_by, decided_at, note, run_id)
SELECT :tenant, c.before ->> 'kind', c.before ->> 'key', c.label, c.user_id,
       c.before ->> 'decision', c.before ->> 'decided_by',
       coalesce(CAST(c.before ->> 'decided_at' AS timestamptz), now()), c.before ->> 'note',
       CAST(c.before ->> 'run_id' AS bigint)
FROM sync.changes c
WHERE c.tenant = :tenant AND c.run_id = :undo_of AND c.entity = 'decision'
  AND c.before ->> 'decision' IS NOT NULL;
INSERT INTO sync.changes (tenant, run_id, entity, action, key, label, user_id, group_id, before, after)
SELECT :tenant, :run_id, 'decision', 'revert', c.key, c.label, c.user_id, c.group_id,
       c.after, c.before
FROM sync.changes c
WHERE c.tenant = :tenant AND c.run_id = :undo_of AND c.entity = 'decision'

-- A run of one person (`sync-pipeline sync TENANT --user EMAIL_OR_UPN`): the address or id
-- asked for, on the run's row (NULL: a run of the whole tenant). History and the UI say so.
ALTER TABLE sync.runs ADD COLUMN IF NOT EXISTS person text;

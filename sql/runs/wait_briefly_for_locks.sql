-- For the rest of this transaction, give up on a lock after a second instead of waiting:
-- a CLI leaving on a second Ctrl-C must not hang behind a run that holds the row.
SET LOCAL lock_timeout = '1s'

-- Each extraction records its own unreadable groups (in its transaction, like all of staging).
DELETE FROM staging.unreadable_groups WHERE tenant = :t

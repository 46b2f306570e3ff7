-- The counts of the diff planned for this run, or null when none was computed.
SELECT planned FROM sync.runs WHERE id = :id

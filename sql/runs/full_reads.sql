-- When each tenant was last read in full (migration 020), for the schedule.
SELECT tenant, read_at FROM sync.full_reads

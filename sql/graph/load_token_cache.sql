SELECT account, cache FROM sync.token_caches WHERE tenant = :t

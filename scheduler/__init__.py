"""scheduler: deadline sweeps on APScheduler. The database holds the deadlines; this only wakes them."""

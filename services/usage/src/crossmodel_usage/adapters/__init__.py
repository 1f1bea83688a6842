"""I/O: the PostgreSQL repository of the request log and the daily aggregates."""

"""The usage logic: records, their validation, and the query rules. Plain Python, no I/O."""

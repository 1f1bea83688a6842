"""`crossmodel`: accounts, credits, keys and usage from the command line, over the admin API."""

"""CrossModel billing."""

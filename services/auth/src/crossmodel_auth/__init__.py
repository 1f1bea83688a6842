"""CrossModel auth."""

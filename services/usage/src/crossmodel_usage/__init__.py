"""CrossModel usage."""

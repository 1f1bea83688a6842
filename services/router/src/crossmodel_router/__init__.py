"""CrossModel router."""

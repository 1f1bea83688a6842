"""CrossModel simulator."""

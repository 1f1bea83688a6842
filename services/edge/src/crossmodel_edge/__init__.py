"""CrossModel edge."""

"""CrossModel devstack."""

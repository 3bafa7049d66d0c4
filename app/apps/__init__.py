"""Apps: the clients a user has connected (created on first use, pausable)."""

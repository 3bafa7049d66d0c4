"""Health, readiness and logging."""

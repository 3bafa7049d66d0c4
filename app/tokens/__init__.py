"""Personal access tokens: opaque, prefixed, stored hashed, scoped, expiring, revocable."""

"""Token verification (personal tokens, Engram's own JWTs, trusted issuers), principal, scopes."""

"""Users (created on first authenticated request) and the apps (clients) they connect."""

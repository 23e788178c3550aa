"""bench of the guard server."""

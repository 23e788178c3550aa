"""classifiers of the guard server."""

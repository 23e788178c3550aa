"""kernels of the guard server."""

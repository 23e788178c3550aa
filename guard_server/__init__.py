"""Unlearning guard server: an OpenAI-compatible vLLM endpoint that forgets on request."""

__version__ = "0.1.0"

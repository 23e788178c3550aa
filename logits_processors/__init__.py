"""vLLM logits processors of the guard: run inside the engine's worker process."""

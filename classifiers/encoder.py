"""Sentence embeddings (sentence-transformers), L2-normalised so inner product is cosine."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


class Encoder:
    def __init__(self, model_dir: str, device: str = "cpu"):
        from sentence_transformers import SentenceTransformer

        self.model: SentenceTransformer = SentenceTransformer(model_dir, device=device)
        self.dim = int(self.model.get_embedding_dimension())

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.model.encode(
            texts,
            batch_size=64,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        ).astype(np.float32)

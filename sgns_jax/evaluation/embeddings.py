"""Trained vectors with lookups, like gensim's KeyedVectors: neighbours, similarity, analogies.

Unit-normalised vectors are computed once; queries are batched matrix products (jnp), so the
19,544 Google analogies are a handful of [queries × D]·[D × V] products.
"""

from __future__ import annotations

import os
from functools import cached_property, partial
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sgns_jax.errors import VocabularyError
from sgns_jax.evaluation.formats import load_word2vec, save_word2vec


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


@partial(jax.jit, static_argnames=("method",))
def _best_candidates(unit_VxD, a_Q, b_Q, c_Q, exclude_QxE, method: str):
    """Argmax over the vocabulary of the analogy score of a:b :: c:?, excluding given ids.

    add (3CosAdd): cos(x, b − a + c) ∝ cos(x,b) − cos(x,a) + cos(x,c).
    mul (3CosMul, Levy & Goldberg 2014): cos'(x,b)·cos'(x,c) / (cos'(x,a) + 1e-3), cos' = (1+cos)/2.
    """
    cos_a = jnp.take(unit_VxD, a_Q, axis=0) @ unit_VxD.T
    cos_b = jnp.take(unit_VxD, b_Q, axis=0) @ unit_VxD.T
    cos_c = jnp.take(unit_VxD, c_Q, axis=0) @ unit_VxD.T
    if method == "add":
        scores = cos_b - cos_a + cos_c
    else:
        scores = ((1 + cos_b) / 2) * ((1 + cos_c) / 2) / ((1 + cos_a) / 2 + 1e-3)
    rows = jnp.arange(a_Q.shape[0])[:, None]
    scores = scores.at[rows, exclude_QxE].set(-jnp.inf, mode="drop")
    return jnp.argmax(scores, axis=1)


class Embeddings:
    """Words and their vectors (float32 [V, D]), in frequency order when trained here.

    Args:
      words: V words (a repeated word keeps its first row, as gensim does).
      vectors: [V, D] array, one row per word.

    ``Embeddings.load(path)`` reads word2vec text or binary files; ``most_similar``,
    ``similarity`` and the analogy methods follow gensim's KeyedVectors.
    """

    def __init__(self, words: Sequence[str], vectors: np.ndarray):
        self.words = list(words)
        self.vectors = np.asarray(vectors, dtype=np.float32)
        if self.vectors.shape[0] != len(self.words):
            raise ValueError("one vector per word")
        self.index = {}
        for i, w in enumerate(self.words):
            self.index.setdefault(w, i)

    @classmethod
    def load(cls, path: str | os.PathLike, binary: bool | None = None,
             limit: int | None = None) -> "Embeddings":
        return cls(*load_word2vec(path, binary=binary, limit=limit))

    def save(self, path: str | os.PathLike, binary: bool = False) -> None:
        save_word2vec(path, self.words, self.vectors, binary=binary)

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self.index

    def __getitem__(self, word: str) -> np.ndarray:
        return self.vectors[self.id(word)]

    def id(self, word: str) -> int:
        try:
            return self.index[word]
        except KeyError:
            raise VocabularyError(f"word not in vocabulary: {word!r}") from None

    @cached_property
    def unit(self) -> np.ndarray:
        """Unit-length rows (zero rows stay zero), computed once."""
        return _unit(self.vectors)

    @cached_property
    def _unit_device(self) -> jax.Array:
        """``unit`` as a device array, transferred once for all queries."""
        return jnp.asarray(self.unit)

    def similarity(self, a: str, b: str) -> float:
        return float(self.unit[self.id(a)] @ self.unit[self.id(b)])

    def most_similar(self, positive: Sequence[str] | str = (), negative: Sequence[str] = (),
                     topn: int = 10, restrict_vocab: int | None = None) -> list[tuple[str, float]]:
        """Nearest words by cosine to the mean of the unit vectors of ``positive`` minus
        ``negative`` (gensim's semantics), the query words themselves excluded."""
        if isinstance(positive, str):
            positive = [positive]
        ids = [self.id(w) for w in positive] + [self.id(w) for w in negative]
        if not ids:
            raise VocabularyError("most_similar needs at least one word")
        weights = np.array([1.0] * len(positive) + [-1.0] * len(negative), dtype=np.float32)
        query = _unit((weights[:, None] * self.unit[ids]).mean(0))
        limit = len(self) if restrict_vocab is None else min(restrict_vocab, len(self))
        scores = np.array(self._unit_device[:limit] @ jnp.asarray(query))
        scores[[i for i in ids if i < limit]] = -np.inf
        top = np.argsort(-scores, kind="stable")[:topn]
        return [(self.words[i], float(scores[i])) for i in top if np.isfinite(scores[i])]

    def solve_analogies(self, a: np.ndarray, b: np.ndarray, c: np.ndarray, *,
                        restrict_vocab: int | None = None, method: str = "add",
                        exclude: np.ndarray | None = None, batch: int = 2048) -> np.ndarray:
        """Vectorised a:b :: c:? over id arrays [Q]; returns predicted ids [Q].

        Candidates are the first ``restrict_vocab`` words; ``exclude`` (int [Q, E], ids ≥ V
        ignored) defaults to the three question words.
        """
        if method not in ("add", "mul"):
            raise ValueError(f"method must be 'add' (3CosAdd) or 'mul' (3CosMul), got {method!r}")
        limit = len(self) if restrict_vocab is None else min(restrict_vocab, len(self))
        unit = self._unit_device[:limit]
        if exclude is None:
            exclude = np.stack([a, b, c], axis=1)
        out = []
        for s in range(0, len(a), batch):
            sl = slice(s, s + batch)
            q = len(a[sl])
            pad = batch - q  # fixed shapes: one compilation for every batch
            padded = [np.pad(np.asarray(x[sl]), [(0, pad)] + [(0, 0)] * (np.ndim(x) - 1))
                      for x in (a, b, c, exclude)]
            out.append(np.asarray(_best_candidates(unit, *map(jnp.asarray, padded), method))[:q])
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

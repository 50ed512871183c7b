"""Vocabulary: word counts, ``min_count`` / ``max_vocab`` / ``max_final_vocab`` pruning, word2vec's
save-vocab format."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from sgns_jax.errors import ConfigError, CorpusError, VocabularyError
from sgns_jax.io_utils import atomic_write


@dataclass(frozen=True, eq=False)
class Vocabulary:
    """Words sorted by count, descending; ties keep first-occurrence order (a stable sort).

    ``counts[i]`` is the corpus count of ``words[i]``; ids are positions in this order, so id 0
    is the most frequent word, as in word2vec and gensim.
    """

    words: tuple[str, ...]
    counts: np.ndarray  # int64 [V]
    _index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "counts", np.asarray(self.counts, dtype=np.int64))
        object.__setattr__(self, "_index", {w: i for i, w in enumerate(self.words)})
        if len(self._index) != len(self.words):
            raise VocabularyError("vocabulary has duplicate words")

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self._index

    def id(self, word: str) -> int:
        try:
            return self._index[word]
        except KeyError:
            raise VocabularyError(f"word not in vocabulary: {word!r}") from None

    def get(self, word: str, default: int | None = None) -> int | None:
        return self._index.get(word, default)

    @property
    def total(self) -> int:
        """Sum of the counts of the vocabulary words (word2vec's ``train_words``)."""
        return int(self.counts.sum())

    @classmethod
    def from_counts(
        cls,
        words: Sequence[str],
        counts: Iterable[int],
        *,
        min_count: int = 5,
        max_vocab: int | None = None,
        max_final_vocab: int | None = None,
    ) -> "Vocabulary":
        """Prune and sort. ``words`` must be in first-occurrence order for a stable tie-break.

        ``max_vocab`` keeps exactly the ``max_vocab`` most frequent words *after* the full
        count, ties broken by first occurrence, so the kept counts are exact (gensim's
        ``max_vocab_size`` prunes during counting instead, a known trap: gensim #3500).
        ``max_final_vocab`` is gensim's: min_count is raised to one more than the count of the
        (N+1)-th most frequent word, so at most N words are kept and a tie at the boundary
        drops every word of that count.
        """
        check_vocab_settings(min_count, max_vocab)
        if max_final_vocab is not None and max_final_vocab < 1:
            raise ConfigError(f"max_final_vocab must be >= 1 or None, got {max_final_vocab!r}")
        counts = np.asarray(list(counts) if not isinstance(counts, np.ndarray) else counts,
                            dtype=np.int64)
        if max_final_vocab is not None and max_final_vocab < counts.size:
            boundary = np.partition(counts, counts.size - 1 - max_final_vocab)[counts.size - 1 - max_final_vocab]
            min_count = max(min_count, int(boundary) + 1)
        keep = np.flatnonzero(counts >= min_count)
        if keep.size == 0:
            raise CorpusError(
                f"no word reaches min_count={min_count} "
                f"(the most frequent word occurs {int(counts.max(initial=0))} times)")
        order = keep[np.argsort(-counts[keep], kind="stable")]
        if max_vocab is not None:
            order = order[:max_vocab]
        return cls(tuple(words[i] for i in order), counts[order])

    def save(self, path: str | os.PathLike) -> None:
        """word2vec's ``-save-vocab`` format: ``word count`` per line, most frequent first."""
        lines = "".join(f"{w} {c}\n" for w, c in zip(self.words, self.counts.tolist()))
        atomic_write(path, lines.encode("utf-8"))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Vocabulary":
        words, counts = [], []
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 2 or not parts[1].isdigit():
                    raise VocabularyError(f"{path}:{lineno}: expected 'word count', got {line!r}")
                words.append(parts[0])
                counts.append(int(parts[1]))
        if not words:
            raise VocabularyError(f"{path}: empty vocabulary file")
        return cls(tuple(words), np.array(counts, dtype=np.int64))

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Vocabulary) and self.words == other.words
                and np.array_equal(self.counts, other.counts))


def check_vocab_settings(min_count: int, max_vocab: int | None) -> None:
    if not isinstance(min_count, (int, np.integer)) or min_count < 1:
        raise ConfigError(f"min_count must be an integer >= 1, got {min_count!r}")
    if max_vocab is not None and max_vocab < 1:
        raise ConfigError(f"max_vocab must be >= 1 or None, got {max_vocab!r}")


def noise_distribution(counts: np.ndarray, power: float = 0.75) -> np.ndarray:
    """Normalised ``counts ** power`` (float64 [V]), word2vec's noise distribution for NS."""
    if power < 0:
        raise ConfigError(f"ns_exponent must be >= 0, got {power}")
    weights = np.asarray(counts, dtype=np.float64) ** power
    return weights / weights.sum()

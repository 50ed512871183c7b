"""Subsampling and skip-gram context windows, vectorised in numpy (no per-token Python loop).

Two layouts of the same windows:

* **pairs**: one row per (centre, context) pair, in corpus order — for each centre, the contexts
  from left to right. Serves skip-gram with every output layer.
* **windows**: one row per centre, its ``2·window`` context slots (left to right, centre
  excluded) and a mask. Serves CBOW and skip-gram with window-shared negatives.

Both use word2vec's dynamic window: each centre draws ``b`` uniformly from ``1..window`` and
sees ``b`` words on each side, never across a sentence boundary.
"""

from __future__ import annotations

import numpy as np

from sgns_jax.errors import ConfigError


def keep_probabilities(counts: np.ndarray, sample: float) -> np.ndarray:
    """word2vec's subsampling keep-probability per word (float64 [V]), clipped to 1.

    ``p = (sqrt(f / (t·N)) + 1) · (t·N) / f`` with f the word's count, N the total count and
    t = ``sample``; ``sample = 0`` keeps everything.
    """
    if sample < 0:
        raise ConfigError(f"sample must be >= 0, got {sample}")
    counts = np.asarray(counts, dtype=np.float64)
    if sample == 0:
        return np.ones_like(counts)
    tn = sample * counts.sum()
    return np.minimum(1.0, (np.sqrt(counts / tn) + 1.0) * tn / counts)


def check_window(window: int) -> None:
    if not isinstance(window, (int, np.integer)) or window < 1:
        raise ConfigError(f"window must be an integer >= 1, got {window!r}")


def context_offsets(window: int) -> np.ndarray:
    """``[-window, ..., -1, 1, ..., window]`` (int64 [2·window])."""
    return np.concatenate([np.arange(-window, 0), np.arange(1, window + 1)])


def window_mask(sentence_ids: np.ndarray, reduced_windows: np.ndarray, window: int) -> np.ndarray:
    """bool [n, 2·window]: slot j of centre i is a context inside b_i and the same sentence."""
    check_window(window)
    n = sentence_ids.shape[0]
    # Shifted slices of a padded copy instead of an [n, 2W] gather: no index arithmetic, no clip.
    padded = np.concatenate([np.full(window, -1, sentence_ids.dtype), sentence_ids,
                             np.full(window, -1, sentence_ids.dtype)])
    mask = np.empty((n, 2 * window), dtype=bool)
    for j, off in enumerate(context_offsets(window)):
        np.equal(padded[window + off:window + off + n], sentence_ids, out=mask[:, j])
        mask[:, j] &= reduced_windows >= abs(off)
    return mask


def skipgram_pairs(ids: np.ndarray, sentence_ids: np.ndarray, reduced_windows: np.ndarray,
                   window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All (centre, context) pairs in corpus order.

    Args:
      ids: int32 [n] token ids (already subsampled).
      sentence_ids: int [n] sentence index of each token.
      reduced_windows: int [n] the effective window b of each centre, in 1..window.
    Returns:
      centres int32 [P], contexts int32 [P], and the position (int64 [P]) of each pair's centre.
    """
    mask = window_mask(sentence_ids, reduced_windows, window)
    row, slot = np.nonzero(mask)  # row-major: centre by centre, contexts left to right
    ids = np.asarray(ids, dtype=np.int32)
    return ids[row], ids[row + context_offsets(window)[slot]], row


def context_windows(ids: np.ndarray, sentence_ids: np.ndarray, reduced_windows: np.ndarray,
                    window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Window layout: centres with at least one context.

    Returns centre int32 [m], context int32 [m, 2·window] (0 in masked slots), mask bool
    [m, 2·window], and the position (int64 [m]) of each centre.
    """
    mask = window_mask(sentence_ids, reduced_windows, window)
    rows = np.flatnonzero(mask.any(axis=1))
    mask = mask[rows]
    ids = np.asarray(ids, dtype=np.int32)
    # int32 slot positions, clipped and zeroed in place: the [m, 2·window] temporaries are the
    # producer's largest (a block's positions fit int32: blocks are 2^17 tokens).
    slots = rows.astype(np.int32)[:, None] + context_offsets(window).astype(np.int32)
    np.clip(slots, 0, ids.shape[0] - 1, out=slots)
    context = ids[slots]
    context *= mask  # masked slots 0
    return ids[rows], context, mask, rows

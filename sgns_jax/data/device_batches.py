"""Batches made on the device: the host ships token ids, 4 bytes a token; the device subsamples,
cuts sentences, draws the windows, extracts the examples and runs the steps (issue 26).

A fast accelerator outruns one host core making pairs (``experiments/perf/bench_pipeline.py``:
32–35 M pairs/s, half of what ~11 M words/s at window 5 needs). Here the host only slices the
memory-mapped ids into blocks. The procedure is the host pipeline's
(:func:`sgns_jax.data.batches.epoch_examples`), with JAX keys instead of numpy's generator: the
same statistics, not the same draws.

* **Blocks** (host, :func:`epoch_token_blocks`): block ``b`` of an epoch holds the corpus's
  tokens ``[start, start + n)``, ``n ≤ N = spec.block_tokens``, padded to ``N``. A block ends
  where a line starts; a line longer than ``N`` is cut at one of its stored 1,000-token pieces,
  where the host pipeline would carry its unfinished sentence into the next block: windows lose
  the contexts across such a cut (one cut per ``N`` tokens of a single-line corpus such as
  text8: a few pairs in 10⁵). A token that starts a line (and each block's first) is stored as
  ``−(id + 1)``: the sign bit carries the lines, so nothing but the ids travels.
* **Keys**: block ``b`` of epoch ``e`` draws from ``fold_in(fold_in(batch_root, e), b)``, so the
  batches are a pure function of (corpus, spec, seed, epoch, block) and a run resumed at a block
  boundary is the uninterrupted one, bit for bit.
* **Examples** (device, :func:`block_examples`): subsampling (``uniform < keep_p[id]``), the
  kept tokens compacted in order, each line's kept tokens cut into sentences of
  ``sentence_words`` (word2vec counts kept words), a window ``b`` uniform in ``1..window`` per
  centre, then the pairs (or, in the windows layout, the centres with a context) compacted in
  corpus order into buffers sized for the most a block can hold (``N · 2·window`` pairs):
  nothing is ever dropped.
* **Steps** (:func:`device_chunk_steps`): a block's ``count`` examples make
  ``T = ceil(count / B)`` steps, strided as the host's (step ``t`` takes examples ``t, t + T,
  t + 2T, …``; :func:`sgns_jax.data.batches.strided_steps` says why): step 0 reports the loss,
  a ``while_loop`` runs the rest, so the step count follows the block while every shape stays
  fixed.
"""

from __future__ import annotations

from typing import Callable, Iterator, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from sgns_jax.data.corpus import Corpus
from sgns_jax.data.pairs import context_offsets, keep_probabilities

Array = jax.Array

# The device's batch keys branch off the run's seed here, apart from the init and step keys.
BATCH_KEY_STREAM = 0xBA7C


def batch_root_key(seed: int) -> Array:
    """The root of the device pipeline's keys (subsampling and windows) for a run's seed."""
    return jax.random.fold_in(jax.random.key(seed), BATCH_KEY_STREAM)


def block_key(batch_key: Array, epoch: Array | int, index: Array | int) -> Array:
    """Block ``index`` of ``epoch``'s key, from the run's :func:`batch_root_key`."""
    return jax.random.fold_in(jax.random.fold_in(batch_key, epoch), index)


# -- host: blocks of ids -----------------------------------------------------------------------
def block_bounds(corpus: Corpus, block_tokens: int) -> list[tuple[int, int]]:
    """``[start, end)`` of each block: at most ``block_tokens`` long, ending where a line starts
    (or, inside a longer line, where one of its stored pieces starts)."""
    n = len(corpus)
    lines, pieces = np.asarray(corpus.line_starts), np.asarray(corpus.sentence_starts)
    bounds, a = [], 0
    while a < n:
        limit = a + block_tokens
        if limit >= n:
            b = n
        else:
            b = 0
            for cuts in (lines, pieces):
                i = np.searchsorted(cuts, limit, side="right") - 1
                if i >= 0 and cuts[i] > a:
                    b = int(cuts[i])
                    break
            b = b or limit
        bounds.append((a, b))
        a = b
    return bounds


def encode_block(corpus: Corpus, a: int, b: int, block_tokens: int) -> np.ndarray:
    """int32 [block_tokens]: ids ``[a, b)``, a token that starts a line (and the first) stored as
    ``−(id + 1)``, zeros after ``b``."""
    tokens = np.zeros(block_tokens, np.int32)
    tokens[:b - a] = corpus.read_ids(a, b)
    lines = np.asarray(corpus.line_starts)
    starts = lines[np.searchsorted(lines, a):np.searchsorted(lines, b)] - a
    starts = np.union1d(starts, [0])
    tokens[starts] = -tokens[starts] - 1
    return tokens


def zero_block(block_tokens: int) -> dict[str, np.ndarray]:
    """A block's arrays filled with zeros: the shapes and dtypes every block has."""
    return {"tokens": np.zeros(block_tokens, np.int32), "valid": np.zeros((), np.int32),
            "epoch": np.zeros((), np.int32), "index": np.zeros((), np.int32),
            "words_base": np.zeros((), np.float32)}


def epoch_token_blocks(corpus: Corpus, block_tokens: int, epoch: int
                       ) -> Iterator[tuple[dict[str, np.ndarray], int]]:
    """(block arrays, words read after it) for each block of the epoch; ``words_base`` is the
    words read before the block (the schedule's clock, as the host pipeline's ``words``)."""
    base = epoch * len(corpus)
    for index, (a, b) in enumerate(block_bounds(corpus, block_tokens)):
        arrays = {"tokens": encode_block(corpus, a, b, block_tokens),
                  "valid": np.asarray(b - a, np.int32), "epoch": np.asarray(epoch, np.int32),
                  "index": np.asarray(index, np.int32),
                  "words_base": np.asarray(base + a, np.float32)}
        yield arrays, base + b


# -- device: examples and steps ----------------------------------------------------------------
def kept_tokens(tokens_N: Array, valid: Array, key: Array, keep_p_V: Array) -> dict[str, Array]:
    """Subsampling: the block's kept tokens compacted in order into ``M = N`` slots.

    Returns ``ids``, ``pos`` (offset in the block), ``line`` (block-local line index) — int32
    [M], slots from ``count`` on padding — and ``count``, the kept tokens.
    """
    n = tokens_N.shape[0]
    starts_line_N = tokens_N < 0
    ids_N = jnp.where(starts_line_N, -tokens_N - 1, tokens_N)
    keep_N = ((jnp.arange(n) < valid) & (jax.random.uniform(key, (n,)) < keep_p_V[ids_N]))
    pos_M = jnp.nonzero(keep_N, size=n, fill_value=0)[0].astype(jnp.int32)
    return {"ids": ids_N[pos_M], "pos": pos_M,
            "line": jnp.cumsum(starts_line_N, dtype=jnp.int32)[pos_M],
            "count": keep_N.sum(dtype=jnp.int32)}


def window_slots(ids_M: Array, line_M: Array, count: Array, reduced_M: Array, *, window: int,
                 sentence_words: int) -> tuple[Array, Array]:
    """Context ids int32 [M, 2W] and mask bool [M, 2W] of the first ``count`` kept tokens: slot
    j of centre m is a context inside m's window ``reduced_M[m]`` and its sentence — a line's
    kept tokens cut every ``sentence_words`` (``batches.sentence_of_kept``, ``pairs.window_mask``
    on the host)."""
    m = ids_M.shape[0]
    slot_M = jnp.arange(m, dtype=jnp.int32)
    in_use_M = slot_M < count
    new_line_M = jnp.concatenate([jnp.ones(1, bool), line_M[1:] != line_M[:-1]])
    line_first_M = jax.lax.cummax(jnp.where(new_line_M, slot_M, 0))
    new_sentence_M = new_line_M | ((slot_M - line_first_M) % sentence_words == 0)
    sentence_M = jnp.where(in_use_M, jnp.cumsum(new_sentence_M, dtype=jnp.int32), -1)
    offsets_S = context_offsets(window)
    at_MxS = slot_M[:, None] + offsets_S[None, :]
    at_clipped_MxS = jnp.clip(at_MxS, 0, m - 1)
    mask_MxS = (in_use_M[:, None] & (at_MxS >= 0) & (at_MxS < m)
                & (sentence_M[at_clipped_MxS] == sentence_M[:, None])
                & (reduced_M[:, None] >= np.abs(offsets_S)[None, :]))
    return ids_M[at_clipped_MxS], mask_MxS


def block_examples(tokens_N: Array, valid: Array, key: Array, keep_p_V: Array, *, window: int,
                   sentence_words: int, layout: str) -> tuple[dict[str, Array], Array]:
    """The block's examples in corpus order, in buffers of fixed size, and their count.

    Args:
      tokens_N: int32 [N], as :func:`encode_block` writes them; ``valid`` of them are the block.
      keep_p_V: float32 [V] subsampling keep probabilities.
    Returns:
      pairs layout — ``input`` (context), ``output`` (centre) int32 [N·2W]; windows layout —
      ``centre`` int32 [N], ``context`` int32 [N, 2W], ``mask`` float32 [N, 2W]; both with
      ``pos`` int32 (the centre's offset in the block). Rows from ``count`` on are padding.
    """
    key_keep, key_window = jax.random.split(key)
    kept = kept_tokens(tokens_N, valid, key_keep, keep_p_V)
    ids_M, pos_M = kept["ids"], kept["pos"]
    reduced_M = jax.random.randint(key_window, ids_M.shape, 1, window + 1)
    context_MxS, mask_MxS = window_slots(ids_M, kept["line"], kept["count"], reduced_M,
                                         window=window, sentence_words=sentence_words)
    if layout == "pairs":
        mask_P = mask_MxS.reshape(-1)
        count = mask_P.sum(dtype=jnp.int32)
        pick_P = jnp.nonzero(mask_P, size=mask_P.size, fill_value=0)[0]
        row_P = pick_P // mask_MxS.shape[1]
        return {"input": context_MxS.reshape(-1)[pick_P], "output": ids_M[row_P],
                "pos": pos_M[row_P]}, count
    has_context_M = mask_MxS.any(axis=1)
    count = has_context_M.sum(dtype=jnp.int32)
    pick_M = jnp.nonzero(has_context_M, size=ids_M.shape[0], fill_value=0)[0]
    mask_MxS = mask_MxS[pick_M]
    return {"centre": ids_M[pick_M], "context": jnp.where(mask_MxS, context_MxS[pick_M], 0),
            "mask": mask_MxS.astype(jnp.float32), "pos": pos_M[pick_M]}, count


def strided_batch(examples: Mapping[str, Array], count: Array, t: Array, steps: Array,
                  batch_size: int) -> tuple[dict[str, Array], Array]:
    """Step ``t`` of ``steps``: examples ``t, t + steps, …`` (``batch_size`` rows; rows past
    ``count`` masked, their ids 0 as the host pipeline pads), and the step's first example's
    ``pos``."""
    rows_B = t + jnp.arange(batch_size, dtype=jnp.int32) * steps
    real_B = rows_B < count
    rows_B = jnp.where(real_B, rows_B, 0)
    batch = {}
    for name, values in examples.items():
        if name == "pos":
            continue
        picked = values[rows_B]
        if name == "mask":
            batch[name] = picked * real_B[:, None]
        else:
            keep = real_B if picked.ndim == 1 else real_B[:, None]
            batch[name] = jnp.where(keep, picked, 0)
    if "mask" not in batch:
        batch["mask"] = real_B.astype(jnp.float32)
    return batch, examples["pos"][rows_B[0]]


def device_chunk_steps(layer, rule, schedule: Callable[[Array], Array], *, batch_size: int,
                       window: int, sentence_words: int) -> Callable:
    """``chunk(state, block, consts) -> (state, loss_sum, count)``, not yet jitted: one block's
    examples made and trained. ``consts``: ``root_key`` and ``batch_key`` (key data, uint32)
    and ``keep_p`` (float32 [V]). ``loss_sum`` and ``count`` are the block's first step's."""
    from sgns_jax.engine.step import train_step

    def chunk(state, block: Mapping[str, Array], consts: Mapping[str, Array]):
        root_key = jax.random.wrap_key_data(consts["root_key"])
        key = block_key(jax.random.wrap_key_data(consts["batch_key"]), block["epoch"], block["index"])
        examples, count = block_examples(block["tokens"], block["valid"], key, consts["keep_p"],
                                         window=window, sentence_words=sentence_words,
                                         layout=layer.layout)
        steps = jnp.maximum(1, (count + batch_size - 1) // batch_size)

        def step(state, t, report):
            batch, pos = strided_batch(examples, count, t, steps, batch_size)
            lr = schedule(block["words_base"] + pos.astype(jnp.float32))
            return train_step(state, batch, jax.random.fold_in(root_key, state.step), lr,
                              layer=layer, rule=rule, report_loss=report)

        # Step 0 with the loss value (an empty block's step 0 is all padding: count 0), then
        # the rest without it (as chunk_steps: a cond inside the loop serialised the CPU's ops).
        state, loss_sum, n = step(state, jnp.int32(0), True)
        state, _ = jax.lax.while_loop(lambda c: c[1] < steps,
                                      lambda c: (step(c[0], c[1], False)[0], c[1] + 1),
                                      (state, jnp.int32(1)))
        return state, loss_sum, n

    return chunk


def device_consts(root_key_data: Array, seed: int, counts: np.ndarray, sample: float
                  ) -> dict[str, Array]:
    """The device chunk's constant inputs for a run."""
    return {"root_key": root_key_data, "batch_key": jax.random.key_data(batch_root_key(seed)),
            "keep_p": jnp.asarray(keep_probabilities(counts, sample), jnp.float32)}

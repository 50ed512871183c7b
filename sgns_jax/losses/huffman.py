"""word2vec's Huffman tree for hierarchical softmax.

Leaves are the V words, inner nodes are numbered ``0 .. V-2`` with the root last (``V-2``), as in
word2vec's ``CreateBinaryTree``. Each word's path runs from the root down: ``points[w, j]`` is the
j-th inner node on it and ``codes[w, j]`` the branch taken there (1 for the second-smallest child
of the merge that made the node, as in word2vec). Paths are padded to the maximum depth;
``mask`` marks the real entries.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class HuffmanTree(NamedTuple):
    points: np.ndarray  # int32 [V, L] inner-node ids on the root→leaf path (0 where masked)
    codes: np.ndarray   # int8  [V, L] branch bits
    mask: np.ndarray    # bool  [V, L]
    lengths: np.ndarray  # int32 [V] code lengths

    @property
    def num_inner(self) -> int:
        return max(self.lengths.size - 1, 0)


def huffman_codes(counts: np.ndarray) -> HuffmanTree:
    """Build the tree in O(V log V) (a sort, then word2vec's linear two-queue merge).

    Deterministic on ties: words are ordered by count descending with a stable sort (ties keep
    their index order), and on equal weights the merge takes the inner node before the leaf
    (word2vec's strict ``<`` in CreateBinaryTree). V = 1 gives an empty code (a tree with no decision); V = 2 one bit each.
    """
    counts = np.asarray(counts, dtype=np.int64)
    v = counts.size
    if v == 0:
        raise ValueError("huffman_codes needs at least one word")
    # word2vec assumes counts sorted descending; sort here so any order works.
    order = np.argsort(-counts, kind="stable")
    sorted_counts = counts[order]
    weight = np.concatenate([sorted_counts, np.full(max(v - 1, 0), np.iinfo(np.int64).max // 4)])
    parent = np.zeros(2 * v - 1, dtype=np.int64)
    binary = np.zeros(2 * v - 1, dtype=np.int8)
    pos1, pos2 = v - 1, v
    for a in range(v - 1):
        picks = []
        for _ in range(2):
            if pos1 >= 0 and weight[pos1] < weight[pos2]:
                picks.append(pos1)
                pos1 -= 1
            else:
                picks.append(pos2)
                pos2 += 1
        weight[v + a] = weight[picks[0]] + weight[picks[1]]
        parent[picks[0]] = parent[picks[1]] = v + a
        binary[picks[1]] = 1
    root = 2 * v - 2
    # Walk all leaves up at once, level by level (vectorised over words).
    up_points, up_codes = [], []
    lengths = np.zeros(v, dtype=np.int64)
    node = np.arange(v)
    active = node != root
    while active.any():
        up_codes.append(np.where(active, binary[node], 0))
        nxt = np.where(active, parent[node], node)
        up_points.append(np.where(active, nxt - v, 0))
        lengths += active
        node = nxt
        active = node != root
    depth = max(int(lengths.max(initial=0)), 1)
    points = np.zeros((v, depth), dtype=np.int32)
    codes = np.zeros((v, depth), dtype=np.int8)
    # up_*[j] is the j-th step from the leaf; the root-first position is lengths - 1 - j.
    rows = np.arange(v)
    for j, (p, c) in enumerate(zip(up_points, up_codes)):
        has = j < lengths
        col = np.where(has, lengths - 1 - j, 0)
        points[rows[has], col[has]] = p[has]
        codes[rows[has], col[has]] = c[has]
    mask = np.arange(depth)[None, :] < lengths[:, None]
    # Back from sorted order to the caller's word order.
    inv = np.empty(v, dtype=np.int64)
    inv[order] = np.arange(v)
    return HuffmanTree(points[inv], codes[inv], mask[inv], lengths[inv].astype(np.int32))


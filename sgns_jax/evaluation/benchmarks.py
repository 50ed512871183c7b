"""Standard benchmarks: Google analogies and WordSim-353 / SimLex-999 rank correlation.

Semantics follow gensim's ``evaluate_word_analogies`` and ``evaluate_word_pairs`` (case
insensitive, restricted to the most frequent words, questions with unknown words skipped and
counted), so the numbers are directly comparable; the bundled copies of the data sets make it
work offline.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from sgns_jax.errors import SgnsError
from sgns_jax.evaluation.embeddings import Embeddings


def bundled(name: str) -> Path:
    return Path(str(resources.files("sgns_jax") / "resources" / name))


ANALOGIES = "questions-words.txt"
WORDSIM = "wordsim353.tsv"
SIMLEX = "simlex999.txt"


@dataclass
class AnalogyResult:
    correct: int
    answered: int     # questions with all four words in the restricted vocabulary
    total: int        # questions in the file
    sections: dict[str, tuple[int, int]] = field(default_factory=dict)  # name → (correct, answered)

    @property
    def accuracy(self) -> float:
        return self.correct / self.answered if self.answered else 0.0

    @property
    def coverage(self) -> float:
        return self.answered / self.total if self.total else 0.0

    def subset(self, syntactic: bool) -> tuple[int, int]:
        picked = [v for k, v in self.sections.items() if k.startswith("gram") == syntactic]
        return sum(c for c, _ in picked), sum(n for _, n in picked)

    def to_dict(self) -> dict:
        sem, syn = self.subset(False), self.subset(True)
        return {"accuracy": self.accuracy, "correct": self.correct, "answered": self.answered,
                "total": self.total, "coverage": self.coverage,
                "semantic": sem[0] / sem[1] if sem[1] else 0.0,
                "syntactic": syn[0] / syn[1] if syn[1] else 0.0,
                "sections": {k: {"correct": c, "answered": n} for k, (c, n) in self.sections.items()}}


@dataclass
class PairsResult:
    spearman: float
    pairs: int        # pairs scored
    oov: int          # pairs skipped for unknown words

    def to_dict(self) -> dict:
        return {"spearman": self.spearman, "pairs": self.pairs, "oov": self.oov}


def _ok_vocab(emb: Embeddings, restrict_vocab: int | None) -> dict[str, int]:
    """UPPER-cased word → id over the first ``restrict_vocab`` words; the first (most frequent)
    case variant wins, as in gensim."""
    words = emb.words[:restrict_vocab]
    return {w.upper(): i for i, w in reversed(list(enumerate(words)))}


def read_analogies(path: str | os.PathLike) -> list[tuple[str, list[tuple[str, str, str, str]]]]:
    sections: list[tuple[str, list]] = []
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        raise SgnsError(f"cannot read analogy file {path}: {e.strerror}") from None
    for line in lines:
        if line.startswith(": "):
            sections.append((line[2:].strip(), []))
        elif line.strip():
            parts = line.split()
            if not sections:
                raise SgnsError(f"{path}: question before the first ': section' line")
            if len(parts) == 4:
                sections[-1][1].append(tuple(parts))
    return sections


def evaluate_analogies(emb: Embeddings, path: str | os.PathLike | None = None, *,
                       restrict_vocab: int | None = 30000, method: str = "add") -> AnalogyResult:
    """Accuracy on a:b :: c:d questions among the ``restrict_vocab`` most frequent words."""
    sections = read_analogies(path or bundled(ANALOGIES))
    ok = _ok_vocab(emb, restrict_vocab)
    upper_ids = np.array([ok.get(w.upper(), -1) for w in emb.words[:restrict_vocab]])
    # All case variants of a question word are excluded as answers (gensim's `ignore` set).
    variants: dict[int, list[int]] = {}
    for i, canonical in enumerate(upper_ids):
        variants.setdefault(int(canonical), []).append(i)
    max_variants = max((len(v) for v in variants.values()), default=1)
    questions, names = [], []
    total = 0
    for name, qs in sections:
        for q in qs:
            total += 1
            ids = [ok.get(w.upper()) for w in q]
            if None not in ids:
                questions.append(ids)
                names.append(name)
    result = AnalogyResult(0, len(questions), total, {name: (0, 0) for name, _ in sections})
    if not questions:
        return result
    q = np.array(questions)
    big = len(emb)  # out-of-range ids are ignored by the exclusion scatter
    exclude = np.full((len(q), 3 * max_variants), big, dtype=np.int64)
    for j in range(3):
        for r, wid in enumerate(q[:, j]):
            vs = variants[int(wid)]
            exclude[r, j * max_variants:j * max_variants + len(vs)] = vs
    predicted = emb.solve_analogies(q[:, 0], q[:, 1], q[:, 2], restrict_vocab=restrict_vocab,
                                    method=method, exclude=exclude)
    hits = upper_ids[predicted] == q[:, 3]
    for name, hit in zip(names, hits):
        c, n = result.sections[name]
        result.sections[name] = (c + int(hit), n + 1)
    result.correct = int(hits.sum())
    return result


def _rank(x: np.ndarray) -> np.ndarray:
    """Ranks with ties averaged (as scipy.stats.rankdata)."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    sx = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sx[j + 1] == sx[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = _rank(np.asarray(a, np.float64)), _rank(np.asarray(b, np.float64))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt((ra ** 2).sum() * (rb ** 2).sum())
    return float((ra * rb).sum() / denom) if denom else 0.0


def evaluate_word_pairs(emb: Embeddings, path: str | os.PathLike, *,
                        restrict_vocab: int | None = 300000) -> PairsResult:
    """Spearman ρ between human scores and cosine similarity; pairs with unknown words skipped."""
    ok = _ok_vocab(emb, restrict_vocab)
    gold, model = [], []
    oov = 0
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        raise SgnsError(f"cannot read word-pair file {path}: {e.strerror}") from None
    unit = emb.unit
    for line in lines:
        if not line or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 3:
            continue
        try:
            score = float(parts[2])
        except ValueError:
            continue
        a, b = ok.get(parts[0].upper()), ok.get(parts[1].upper())
        if a is None or b is None:
            oov += 1
            continue
        gold.append(score)
        model.append(float(unit[a] @ unit[b]))
    if not gold:
        return PairsResult(float("nan"), 0, oov)
    return PairsResult(spearman(np.array(gold), np.array(model)), len(gold), oov)


def evaluate_all(emb: Embeddings, *, restrict_vocab: int = 30000) -> dict:
    """The table `sgns-jax eval` prints: analogies (3CosAdd), WordSim-353, SimLex-999."""
    return {"analogy": evaluate_analogies(emb, restrict_vocab=restrict_vocab).to_dict(),
            "wordsim353": evaluate_word_pairs(emb, bundled(WORDSIM), restrict_vocab=None).to_dict(),
            "simlex999": evaluate_word_pairs(emb, bundled(SIMLEX), restrict_vocab=None).to_dict()}


def format_table(results: dict) -> str:
    a = results["analogy"]
    lines = [f"analogy (3CosAdd): {100 * a['accuracy']:.2f}%  "
             f"(semantic {100 * a['semantic']:.2f}%, syntactic {100 * a['syntactic']:.2f}%; "
             f"{a['correct']}/{a['answered']} correct, coverage {a['answered']}/{a['total']})"]
    for name in ("wordsim353", "simlex999"):
        r = results[name]
        lines.append(f"{name}: spearman {r['spearman']:.4f} ({r['pairs']} pairs, {r['oov']} OOV)")
    return "\n".join(lines)

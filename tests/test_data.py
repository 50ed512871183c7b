"""Corpus → vocabulary → pairs → batches."""

import bz2
import collections
import gzip
import subprocess
import sys

import numpy as np
import pytest

from sgns_jax.data import corpus as corpus_mod
from sgns_jax.data.batches import BatchSpec, Prefetcher, epoch_chunks, epoch_examples
from sgns_jax.data.corpus import NotUtf8Warning, encode_corpus
from sgns_jax.data.pairs import context_windows, keep_probabilities, skipgram_pairs
from sgns_jax.data.vocab import Vocabulary, noise_distribution
from sgns_jax.errors import ConfigError, CorpusError, SgnsError

TEXT = """the quick brown fox jumps over the lazy dog
the dog barks and the fox runs
a b c d e f g the end
"""


def write(tmp_path, text, name="c.txt"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_vocab_counts_equal_counter(tmp_path):
    c = encode_corpus(write(tmp_path, TEXT), min_count=1)
    counter = collections.Counter(TEXT.split())
    assert dict(zip(c.vocab.words, c.vocab.counts.tolist())) == dict(counter)
    # Sorted by count descending, ties in first-occurrence order.
    first = {w: i for i, w in reversed(list(enumerate(TEXT.split())))}
    expected = sorted(counter, key=lambda w: (-counter[w], first[w]))
    assert list(c.vocab.words) == expected
    assert len(c) == sum(counter.values()) == c.raw_tokens


def test_min_count_and_max_vocab_keep_exact_counts(tmp_path):
    c = encode_corpus(write(tmp_path, TEXT), min_count=2)
    counter = collections.Counter(TEXT.split())
    assert set(c.vocab.words) == {w for w, n in counter.items() if n >= 2}
    assert len(c) == sum(n for n in counter.values() if n >= 2)
    c2 = encode_corpus(write(tmp_path, TEXT), min_count=1, max_vocab=3)
    assert list(c2.vocab.words) == ["the", "fox", "dog"]
    assert c2.vocab.counts.tolist() == [counter["the"], counter["fox"], counter["dog"]]
    # The id stream holds exactly the kept words, in order.
    kept = [c2.vocab.id(w) for w in TEXT.split() if w in c2.vocab]
    assert c2.ids.tolist() == kept


def test_vocab_save_load_roundtrip(tmp_path):
    v = Vocabulary.from_counts(["a", "b", "c"], [3, 7, 3], min_count=1)
    assert v.words == ("b", "a", "c")
    v.save(tmp_path / "v.txt")
    assert (tmp_path / "v.txt").read_text() == "b 7\na 3\nc 3\n"
    assert Vocabulary.load(tmp_path / "v.txt") == v


def test_lines_are_sentences_and_long_lines_are_cut(tmp_path):
    c = encode_corpus(write(tmp_path, TEXT), min_count=1)
    lens = [len(line.split()) for line in TEXT.splitlines()]
    assert c.sentence_starts.tolist() == [0, lens[0], lens[0] + lens[1]]
    one_line = " ".join(["w%d" % (i % 7) for i in range(2500)])
    c = encode_corpus(write(tmp_path, one_line, "one.txt"), min_count=1, max_sentence_length=1000)
    assert c.sentence_starts.tolist() == [0, 1000, 2000]


def test_small_blocks_give_the_same_encoding(tmp_path, monkeypatch):
    text = TEXT * 50
    ref = encode_corpus(write(tmp_path, text), min_count=1)
    monkeypatch.setattr(corpus_mod, "BLOCK_BYTES", 7)
    small = encode_corpus(write(tmp_path, text, "d.txt"), min_count=1)
    assert small.vocab == ref.vocab
    assert np.array_equal(small.ids, ref.ids)
    assert np.array_equal(small.sentence_starts, ref.sentence_starts)


def test_gz_bz2_directory_and_lowercase(tmp_path):
    data = TEXT.upper().encode()
    with gzip.open(tmp_path / "a.txt.gz", "wb") as f:
        f.write(data)
    with bz2.open(tmp_path / "b.txt.bz2", "wb") as f:
        f.write(data)
    plain = encode_corpus(write(tmp_path, TEXT), min_count=1)
    for name in ("a.txt.gz", "b.txt.bz2"):
        c = encode_corpus(tmp_path / name, min_count=1, lowercase=True)
        assert c.vocab == plain.vocab and np.array_equal(c.ids, plain.ids)
    d = tmp_path / "dir"
    d.mkdir()
    (d / "1.txt").write_text(TEXT)
    (d / "2.txt").write_text(TEXT)
    c = encode_corpus(d, min_count=1)
    assert len(c) == 2 * len(plain) and len(c.sentence_starts) == 6


def test_cache_is_reused_and_keyed_on_settings(tmp_path):
    path = write(tmp_path, TEXT)
    cache = tmp_path / "cache"
    a = encode_corpus(path, min_count=1, cache_dir=cache)
    assert isinstance(a.ids, np.memmap) or a.ids.base is not None
    entries = list(cache.iterdir())
    assert len(entries) == 1
    b = encode_corpus(path, min_count=1, cache_dir=cache)
    assert np.array_equal(a.ids, b.ids) and list(cache.iterdir()) == entries
    encode_corpus(path, min_count=2, cache_dir=cache)
    assert len(list(cache.iterdir())) == 2


def test_subsampling_rates_match_the_formula():
    counts = np.array([100_000, 10_000, 1_000, 10], dtype=np.int64)
    t = 1e-3
    p = keep_probabilities(counts, t)
    n = counts.sum()
    expected = np.minimum(1, (np.sqrt(counts / (t * n)) + 1) * (t * n) / counts)
    np.testing.assert_allclose(p, expected)
    rng = np.random.default_rng(0)
    draws = 200_000
    for i in range(len(counts)):
        rate = (rng.random(draws) < p[i]).mean()
        # 5 standard errors of a binomial proportion.
        assert abs(rate - p[i]) <= 5 * np.sqrt(p[i] * (1 - p[i]) / draws) + 1e-12
    assert np.all(keep_probabilities(counts, 0) == 1)


def test_subsampling_in_the_epoch_stream_matches_the_formula(tmp_path):
    rng = np.random.default_rng(1)
    words = rng.choice(["a", "b", "c", "d"], p=[0.7, 0.2, 0.09, 0.01], size=50_000)
    c = encode_corpus(write(tmp_path, " ".join(words)), min_count=1)
    spec = BatchSpec(layout="pairs", window=1, sample=1e-2, seed=3)
    p = keep_probabilities(c.vocab.counts, 1e-2)
    kept = np.zeros(len(c.vocab))
    epochs = 4
    for epoch in range(epochs):
        for block in epoch_examples(c, spec, epoch):
            pos = np.unique(block["pos"])
            kept += np.bincount(c.ids[pos], minlength=len(c.vocab))
    # Centres with no surviving neighbour are not counted; with window 1 and a long single
    # stream this is rare but real, so use a looser bound for low keep rates.
    rate = kept / (epochs * c.vocab.counts)
    assert np.all(np.abs(rate - p) < 0.03), (rate, p)


def reference_pairs(ids, sent, b, window):
    out = []
    for i in range(len(ids)):
        for j in list(range(i - b[i], i)) + list(range(i + 1, i + b[i] + 1)):
            if 0 <= j < len(ids) and sent[j] == sent[i]:
                out.append((ids[i], ids[j]))
    return out


@pytest.mark.parametrize("window", [1, 2, 5])
def test_dynamic_window_pairs_equal_reference_loop(window):
    rng = np.random.default_rng(42)
    n = 500
    ids = rng.integers(0, 50, n).astype(np.int32)
    sent = np.sort(rng.integers(0, 30, n))
    b = np.random.default_rng(7).integers(1, window + 1, n)
    centres, contexts, _ = skipgram_pairs(ids, sent, b, window)
    assert list(zip(centres.tolist(), contexts.tolist())) == reference_pairs(ids, sent, b, window)
    # The window layout holds the same pairs.
    c, ctx, mask, _ = context_windows(ids, sent, b, window)
    flat = [(ci, x) for ci, row, m in zip(c.tolist(), ctx.tolist(), mask.tolist())
            for x, keep in zip(row, m) if keep]
    assert flat == reference_pairs(ids, sent, b, window)


def test_no_pair_crosses_a_line(tmp_path):
    lines = [" ".join(f"l{i}w{j}" for j in range(5)) for i in range(40)]
    c = encode_corpus(write(tmp_path, "\n".join(lines) + "\n"), min_count=1)
    spec = BatchSpec(layout="pairs", window=5, sample=0)
    for block in epoch_examples(c, spec, 0):
        for a, b in zip(block["input"], block["output"]):
            assert c.vocab.words[a].split("w")[0] == c.vocab.words[b].split("w")[0]


@pytest.mark.parametrize("layout", ["pairs", "windows"])
def test_chunks_cover_every_pair_exactly_once(tmp_path, layout):
    rng = np.random.default_rng(0)
    text = "\n".join(" ".join(rng.choice(list("abcdefghij"), size=rng.integers(1, 40)))
                     for _ in range(300))
    c = encode_corpus(write(tmp_path, text), min_count=1)
    spec = BatchSpec(layout=layout, batch_size=64, steps_per_chunk=4, window=3, sample=1e-2,
                     seed=5, block_tokens=500)
    ref = collections.Counter()
    for block in epoch_examples(c, spec, 2):
        if layout == "pairs":
            ref.update(zip(block["input"].tolist(), block["output"].tolist(), block["pos"].tolist()))
        else:
            ref.update((int(ce), int(x), int(p)) for ce, row, m, p in zip(
                block["centre"], block["context"], block["mask"], block["pos"])
                for x, keep in zip(row, m) if keep)
    got = collections.Counter()
    chunks = list(epoch_chunks(c, spec, 2))
    for ch in chunks:
        a = ch.arrays
        assert a["mask"].shape[:2] == (4, 64)
        if layout == "pairs":
            m = a["mask"].astype(bool)
            got.update(zip(a["input"][m].tolist(), a["output"][m].tolist(), [0] * int(m.sum())))
        else:
            for ce, row, m in zip(a["centre"].reshape(-1), a["context"].reshape(-1, 6),
                                  a["mask"].reshape(-1, 6)):
                got.update((int(ce), int(x), 0) for x, keep in zip(row, m) if keep)
    strip = collections.Counter()
    for (i, o, _), n in ref.items():
        strip[(i, o, 0)] += n
    assert got == strip
    assert chunks[-1].words_end == 3 * len(c)
    words = np.concatenate([ch.arrays["words"] for ch in chunks])
    assert np.all(np.diff(words) >= 0) and words[0] >= 2 * len(c)


def test_same_seed_same_batches_different_seed_different(tmp_path):
    c = encode_corpus(write(tmp_path, TEXT * 30), min_count=1)
    spec = BatchSpec(batch_size=32, steps_per_chunk=2, seed=1, sample=1e-2)
    a = [ch.arrays for ch in epoch_chunks(c, spec, 0)]
    b = [ch.arrays for ch in epoch_chunks(c, spec, 0)]
    assert all(np.array_equal(x[k], y[k]) for x, y in zip(a, b) for k in x)
    other = [ch.arrays for ch in epoch_chunks(c, BatchSpec(batch_size=32, steps_per_chunk=2,
                                                            seed=2, sample=1e-2), 0)]
    assert not all(np.array_equal(x["input"], y["input"]) for x, y in zip(a, other))
    epoch1 = [ch.arrays for ch in epoch_chunks(c, spec, 1)]
    assert not all(np.array_equal(x["input"], y["input"]) for x, y in zip(a, epoch1))


def test_prefetcher_yields_in_order_and_reraises():
    assert list(Prefetcher(iter(range(100)))) == list(range(100))

    def bad():
        yield 1
        raise CorpusError("boom")

    it = Prefetcher(bad())
    assert next(it) == 1
    with pytest.raises(CorpusError, match="boom"):
        next(it)


def test_noise_distribution():
    counts = np.array([16, 1, 0])
    p = noise_distribution(counts, 0.75)
    np.testing.assert_allclose(p, np.array([8, 1, 0]) / 9)
    np.testing.assert_allclose(noise_distribution(counts, 1.0), counts / 17)


# --- bad input ---------------------------------------------------------------------------

def test_bad_inputs_raise_documented_errors(tmp_path):
    with pytest.raises(CorpusError, match="not found"):
        encode_corpus(tmp_path / "missing.txt")
    with pytest.raises(CorpusError, match="empty"):
        encode_corpus(write(tmp_path, "  \n\n  ", "empty.txt"), min_count=1)
    with pytest.raises(CorpusError, match="min_count"):
        encode_corpus(write(tmp_path, "a b c", "rare.txt"), min_count=5)
    (tmp_path / "bin.dat").write_bytes(b"\x89PNG\x00\x00\x01\x02" * 100)
    with pytest.raises(CorpusError, match="binary"):
        encode_corpus(tmp_path / "bin.dat")
    (tmp_path / "fake.gz").write_bytes(b"not gzip at all")
    with pytest.raises(CorpusError, match="cannot read"):
        encode_corpus(tmp_path / "fake.gz")
    with pytest.raises(ConfigError, match="min_count"):
        encode_corpus(write(tmp_path, TEXT), min_count=0)
    with pytest.raises(ConfigError, match="window"):
        BatchSpec(window=0)
    with pytest.raises(ConfigError, match="sample"):
        BatchSpec(sample=-1)
    assert issubclass(CorpusError, ValueError) and issubclass(ConfigError, SgnsError)


def test_invalid_utf8_warns_once_with_offset(tmp_path):
    p = tmp_path / "latin1.txt"
    p.write_bytes(b"caf\xe9 ok ok\nna\xefve ok\n")
    with pytest.warns(NotUtf8Warning, match="byte offset 3") as record:
        c = encode_corpus(p, min_count=1)
    assert len(record) == 1
    assert "caf\ufffd" in c.vocab


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "sgns_jax.cli", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args, message", [
    (["vocab", "/no/such/file"], "corpus not found"),
    (["vocab", "{empty}"], "empty"),
    (["vocab", "{rare}", "--min-count", "5"], "min_count"),
    (["vocab", "{rare}", "--min-count", "0"], "min_count"),
])
def test_cli_bad_input_one_line_nonzero(tmp_path, args, message):
    files = {"{empty}": write(tmp_path, "", "e.txt"), "{rare}": write(tmp_path, "a b", "r.txt")}
    args = [str(files.get(a, a)) for a in args] + ["--no-cache"]
    r = run_cli(*args)
    assert r.returncode != 0
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Traceback" not in r.stderr


def test_cli_vocab_saves_word2vec_vocab(tmp_path):
    out = tmp_path / "v.txt"
    r = run_cli("vocab", str(write(tmp_path, TEXT)), "--min-count", "2", "--no-cache",
                "--save-vocab", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_text().splitlines()[0] == "the 5"


def _windows_by_position(c, spec, epoch=0):
    """Every example of the windows layout, sorted by its centre's corpus position."""
    blocks = list(epoch_examples(c, spec, epoch))
    pos = np.concatenate([b["pos"] for b in blocks])
    mask = np.concatenate([b["mask"] for b in blocks]).astype(bool)
    assert np.all(np.diff(pos) > 0)  # corpus order, each centre once
    return pos, mask


@pytest.mark.parametrize("block_tokens", [1 << 20, 333])
def test_sentences_are_cut_at_kept_words_after_subsampling(tmp_path, block_tokens):
    """word2vec counts MAX_SENTENCE_LENGTH in words *kept* by subsampling, and never joins two
    lines. Mutant caught: cutting before subsampling (every sentence then holds ~keep rate ×
    100 kept words instead of 100), and a block boundary splitting a sentence (block 333)."""
    rng = np.random.default_rng(12345)  # not the batcher's stream: default_rng([0, 0]) == (0)
    lines = [" ".join(rng.choice(list("abcdefgh"), p=[.4, .2, .1, .1, .05, .05, .05, .05],
                                 size=n)) for n in (2600, 900, 1700)]
    c = encode_corpus(write(tmp_path, "\n".join(lines) + "\n"), min_count=1,
                      max_sentence_length=250)
    assert c.line_starts.tolist() == [0, 2600, 3500]
    spec = BatchSpec(layout="windows", window=1, sample=0.05, sentence_words=100,
                     block_tokens=block_tokens)
    pos, mask = _windows_by_position(c, spec)
    assert 0.3 < pos.size / len(c) < 0.9  # subsampling did drop words
    starts = np.flatnonzero(~mask[:, 0])  # no left neighbour: a sentence starts here
    ends = np.append(starts[1:], pos.size)
    line = c.line_ids(pos)
    for s, e in zip(starts, ends):
        assert np.all(line[s:e] == line[s])  # a sentence stays in its line
        last_of_line = e == pos.size or line[e] != line[s]
        assert e - s == 100 or (last_of_line and e - s <= 100), (s, e)
    # Both block sizes give the same examples.
    ref = _windows_by_position(c, BatchSpec(layout="windows", window=1, sample=0.05,
                                            sentence_words=100))
    np.testing.assert_array_equal(pos, ref[0])
    np.testing.assert_array_equal(mask, ref[1])


def test_pairs_follow_word2vec_orientation(tmp_path):
    """Skip-gram pairs as word2vec.c trains them: the context word is the input (its w_in row
    is updated), the centre the output. Mutant caught: input = centre."""
    c = encode_corpus(write(tmp_path, "a b c d e f\n"), min_count=1)
    spec = BatchSpec(layout="pairs", window=1, sample=0)
    (block,) = epoch_examples(c, spec, 0)
    words = np.array(c.vocab.words)
    got = list(zip(words[block["input"]], words[block["output"]], block["pos"]))
    # Centre "b" (position 1) is predicted from "a" and "c", in that order.
    assert got[:3] == [("b", "a", 0), ("a", "b", 1), ("c", "b", 1)]


def test_reduced_window_is_uniform_on_1_to_window(tmp_path):
    """word2vec's dynamic window: each kept centre sees b ~ U{1..window} words on each side.
    Mutants caught: b drawn from 0..window−1 or 1..window−1 (wrong support), b per block instead
    of per centre (chi-square over the interior centres)."""
    rng = np.random.default_rng(1)
    text = "\n".join(" ".join(rng.choice(list("abcdefghij"), size=600)) for _ in range(20))
    c = encode_corpus(write(tmp_path, text + "\n"), min_count=1)
    window = 5
    spec = BatchSpec(layout="windows", window=window, sample=0, seed=4)
    pos, mask = _windows_by_position(c, spec)
    start = c.line_starts[c.line_ids(pos)]
    rank = pos - start
    interior = (rank >= window) & (rank < 600 - window)
    left, right = mask[interior, :window].sum(1), mask[interior, window:].sum(1)
    np.testing.assert_array_equal(left, right)  # the same b on both sides
    # Contiguous: the b nearest slots on the left are the ones used.
    b = left
    expected = np.arange(window)[None, ::-1] < b[:, None]
    np.testing.assert_array_equal(mask[interior, :window], expected)
    observed = np.bincount(b, minlength=window + 1)
    assert observed[0] == 0 and observed.sum() == interior.sum()
    e = interior.sum() / window
    chi2 = np.sum((observed[1:] - e) ** 2 / e)
    assert chi2 < 18.5, observed  # chi-square with 4 dof: p < 0.001 above 18.47


@pytest.mark.parametrize("n", [1000, 5000, 12345])
def test_max_final_vocab_equals_gensims_vocabulary(tmp_path, n):
    """``max_final_vocab`` keeps what gensim 4's ``Word2Vec(max_final_vocab=N)`` keeps on the
    bundled corpus: min_count raised to one more than the (N+1)-th count, so ties at the
    boundary all go. Mutant caught: keeping exactly N words (``max_vocab``'s rule)."""
    from gensim.models import Word2Vec
    from gensim.models.word2vec import Text8Corpus

    from sgns_jax.evaluation.benchmarks import bundled

    path = tmp_path / "wiki.txt"
    import gzip as gz
    path.write_bytes(gz.decompress(bundled("wiki.txt.gz").read_bytes()))
    ours = encode_corpus(path, min_count=5, max_final_vocab=n).vocab
    model = Word2Vec(min_count=5, max_final_vocab=n, workers=1)
    model.build_vocab(Text8Corpus(str(path)))
    theirs = {w: model.wv.get_vecattr(w, "count") for w in model.wv.index_to_key}
    assert len(ours) <= n
    assert dict(zip(ours.words, ours.counts.tolist())) == theirs


@pytest.mark.parametrize("layout", ["pairs", "windows"])
def test_steps_are_strided_through_the_chunk(tmp_path, layout):
    """Step t of a chunk holds its examples t, t + T, t + 2T, … (T steps), not B consecutive ones:
    a step's updates are computed on the same parameters, and consecutive windows share their
    tokens (see strided_steps)."""
    c = encode_corpus(write(tmp_path, TEXT * 40), min_count=1)
    spec = BatchSpec(layout=layout, batch_size=8, steps_per_chunk=4, window=3, sample=0)
    examples = next(iter(epoch_examples(c, spec, 0)))
    chunk = next(iter(epoch_chunks(c, spec, 0)))
    key = "input" if layout == "pairs" else "context"
    for name in (key, "mask"):
        flat = examples[name][:32]
        for t in range(4):
            np.testing.assert_array_equal(chunk.arrays[name][t], flat[t::4])
    np.testing.assert_array_equal(chunk.arrays["words"], examples["pos"][:4])


def test_scan_processes_do_not_run_the_callers_script_again(tmp_path):
    """A script without an ``if __name__ == "__main__"`` guard encodes a corpus large enough
    for scan processes (one part on one core, and parts on two): they are fresh interpreters,
    not multiprocessing workers that import the caller's main module again (which ran the
    script a second time: a traceback and no corpus)."""
    import subprocess
    import sys

    corpus = write(tmp_path, TEXT * 40)
    script = tmp_path / "script.py"
    script.write_text(
        "import sgns_jax.data.corpus as c\n"
        "c.SCAN_PROCESS_BYTES = 0\n"
        "print('run', flush=True)\n"
        "for parallel in (1 << 40, 0):  # one part; parts of 64 bytes on every core\n"
        "    c.PARALLEL_SCAN_BYTES, c.PART_BYTES = parallel, 64\n"
        "    c._scan = None  # the in-process scan must not run\n"
        f"    print(len(c.encode_corpus({str(corpus)!r}, min_count=1, cache_dir=None).vocab))\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    n = len(encode_corpus(corpus, min_count=1).vocab)
    assert done.stdout.split() == ["run", str(n), str(n)]


def test_a_large_corpus_scanned_on_every_core_gives_one_pass_result(tmp_path, monkeypatch):
    """Parts scanned by worker processes — the files of a folder, a plain file cut at
    whitespace inside its lines (a 3,000-token line among short ones, blank lines, tabs), a
    .gz file whole — merge into exactly one pass's cache entry, every file byte for byte; an
    invalid UTF-8 byte in a later part is warned about once, at its offset in the file."""
    import os
    import random

    rng = random.Random(3)
    words = [f"w{i}" for i in range(300)] + ["é", "naïve"]
    folder = tmp_path / "corpus"
    folder.mkdir()
    lines = [" ".join(rng.choices(words, k=rng.choice([0, 3, 17, 60]))) for _ in range(400)]
    lines.insert(150, "\t".join(rng.choices(words, k=3000)))
    text = "\n".join(lines).encode() + b"\n"
    bad = text.index(b"\n", len(text) // 2)
    (folder / "a.txt").write_bytes(text[:bad] + b" \xff" + text[bad:])
    with gzip.open(folder / "b.txt.gz", "wt") as f:
        f.write("\n".join(" ".join(rng.choices(words, k=20)) for _ in range(50)))
    (folder / "c.txt").write_text("w1 w2 w999\nw3")  # no final newline

    def encode(cache, parallel):
        monkeypatch.setattr(corpus_mod, "PARALLEL_SCAN_BYTES", 0 if parallel else 1 << 40)
        monkeypatch.setattr(corpus_mod, "SCAN_PROCESS_BYTES", 0 if parallel else 1 << 40)
        monkeypatch.setattr(corpus_mod, "PART_BYTES", 2000)
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
        if parallel:  # the one-pass scan must not run
            monkeypatch.setattr(corpus_mod, "_scan", None)
        with pytest.warns(NotUtf8Warning, match=rf"invalid UTF-8 at byte offset {bad + 1}\b") as caught:
            corpus = encode_corpus(folder, min_count=1, max_sentence_length=50, cache_dir=cache)
        assert len([w for w in caught if w.category is NotUtf8Warning]) == 1
        return corpus

    assert len(corpus_mod._parts(sorted(folder.iterdir()), 2000)) > 10
    one, parts = encode(tmp_path / "one", False), encode(tmp_path / "parts", True)
    assert one.vocab.words == parts.vocab.words and one.raw_tokens == parts.raw_tokens
    entries = [next((tmp_path / side).glob("corpus-*")) for side in ("one", "parts")]
    names = sorted(p.name for p in entries[0].iterdir())
    assert names == sorted(p.name for p in entries[1].iterdir()) and "ids.npy" in names
    for name in names:
        assert (entries[0] / name).read_bytes() == (entries[1] / name).read_bytes(), name

"""Vector formats, benchmarks (against gensim), neighbours, download."""

import hashlib
import http.server
import io
import subprocess
import sys
import threading
import zipfile

import numpy as np
import pytest

from sgns_jax.errors import SgnsError, VectorsFormatError, VocabularyError
from sgns_jax.evaluation.benchmarks import (ANALOGIES, SIMLEX, WORDSIM, bundled, evaluate_analogies,
                                            evaluate_word_pairs, spearman)
from sgns_jax.evaluation.download import DownloadError, download_text8
from sgns_jax.evaluation.embeddings import Embeddings
from sgns_jax.evaluation.formats import load_word2vec, save_word2vec

gensim = pytest.importorskip("gensim")
from gensim.models import KeyedVectors  # noqa: E402


def analogy_vocab():
    """Lower-cased words of the analogy and similarity sets plus filler, shuffled."""
    words = set()
    for line in bundled(ANALOGIES).read_text().splitlines():
        if not line.startswith(":"):
            words.update(w.lower() for w in line.split())
    for f in (WORDSIM, SIMLEX):
        for line in bundled(f).read_text().splitlines():
            if not line.startswith("#"):
                words.update(w.lower() for w in line.split("\t")[:2])
    words = sorted(words)
    rng = np.random.default_rng(0)
    rng.shuffle(words)
    # Drop some so coverage is partial, add a case variant to exercise case folding.
    return words[: int(len(words) * 0.85)] + ["Paris", "ünïcödé"]


@pytest.fixture(scope="module")
def vectors():
    """Random vectors where, for many question pairs (a, b), b ≈ a + the section's offset, so a
    good share of analogies is answered correctly (and some are not)."""
    words = analogy_vocab()
    index = {w: i for i, w in enumerate(words)}
    rng = np.random.default_rng(1)
    vecs = rng.normal(size=(len(words), 40)).astype(np.float32)
    assigned = set()
    offset = None
    for line in bundled(ANALOGIES).read_text().splitlines():
        if line.startswith(":"):
            offset = rng.normal(size=40) * 1.5
            continue
        a, b, c, d = (w.lower() for w in line.split())
        for x, y in ((a, b), (c, d)):
            if x in index and y in index and y not in assigned and rng.random() < 0.7:
                vecs[index[y]] = vecs[index[x]] + offset + rng.normal(size=40) * 0.5
                assigned.add(y)
    return words, vecs


def test_text_and_binary_roundtrip(tmp_path, vectors):
    words, vecs = vectors
    for binary in (False, True):
        path = tmp_path / f"v{int(binary)}"
        save_word2vec(path, words, vecs, binary=binary)
        w2, v2 = load_word2vec(path)  # format detected
        assert w2 == words
        np.testing.assert_array_equal(v2, vecs)
        w3, v3 = load_word2vec(path, binary=binary, limit=10)
        assert w3 == words[:10] and v3.shape == (10, 40)


def test_text_vectors_are_np_savetxt_rows_after_the_word():
    """The text format, exactly: each row as np.savetxt writes it (%.9g) after its word, across
    the writer's blocks of rows (odd sizes, values that %.9g rounds)."""
    from sgns_jax.evaluation.formats import write_word2vec

    rng = np.random.default_rng(0)
    vecs = (rng.standard_normal((2500, 3)) * 10.0 ** rng.integers(-8, 8, (2500, 3))).astype(np.float32)
    words = [f"w{i}é" for i in range(len(vecs))]
    out = io.BytesIO()
    write_word2vec(out, words, vecs)
    rows = io.StringIO()
    np.savetxt(rows, vecs, fmt="%.9g", delimiter=" ")
    expected = "2500 3\n" + "".join(f"{w} {r}\n" for w, r in zip(words, rows.getvalue().splitlines()))
    assert out.getvalue() == expected.encode("utf-8")


def test_files_interoperate_with_gensim(tmp_path, vectors):
    words, vecs = vectors
    for binary in (False, True):
        ours = tmp_path / f"ours{int(binary)}"
        save_word2vec(ours, words, vecs, binary=binary)
        kv = KeyedVectors.load_word2vec_format(str(ours), binary=binary)
        assert kv.index_to_key == words
        np.testing.assert_array_equal(kv.vectors, vecs)
        theirs = tmp_path / f"theirs{int(binary)}"
        kv.save_word2vec_format(str(theirs), binary=binary)
        w2, v2 = load_word2vec(theirs, binary=binary)
        assert w2 == words
        np.testing.assert_allclose(v2, vecs, rtol=1e-6)


@pytest.mark.parametrize("restrict", [30000, 500])
def test_analogies_equal_gensim(tmp_path, vectors, restrict):
    words, vecs = vectors
    path = tmp_path / "v.txt"
    save_word2vec(path, words, vecs)
    ours = evaluate_analogies(Embeddings(words, vecs), restrict_vocab=restrict)
    kv = KeyedVectors.load_word2vec_format(str(path))
    score, sections = kv.evaluate_word_analogies(str(bundled(ANALOGIES)), restrict_vocab=restrict)
    total = sections[-1]
    assert ours.correct == len(total["correct"])
    assert ours.answered == len(total["correct"]) + len(total["incorrect"])
    assert ours.total == 19544
    assert 0.05 < ours.accuracy < 0.95  # a meaningful comparison, not all right or all wrong
    assert ours.accuracy == pytest.approx(score)
    for s in sections[:-1]:
        assert ours.sections[s["section"]] == (len(s["correct"]), len(s["correct"]) + len(s["incorrect"]))


@pytest.mark.parametrize("name", [WORDSIM, SIMLEX])
def test_word_pairs_equal_gensim(tmp_path, vectors, name):
    words, vecs = vectors
    path = tmp_path / "v.txt"
    save_word2vec(path, words, vecs)
    ours = evaluate_word_pairs(Embeddings(words, vecs), bundled(name))
    kv = KeyedVectors.load_word2vec_format(str(path))
    _, rho, oov_ratio = kv.evaluate_word_pairs(str(bundled(name)))
    assert ours.spearman == pytest.approx(rho.statistic, abs=1e-6)
    assert 100 * ours.oov / (ours.oov + ours.pairs) == pytest.approx(oov_ratio)


def test_spearman_with_ties_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 50).astype(float), rng.normal(size=50)
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)


def test_most_similar_and_3cosmul_match_gensim(vectors):
    words, vecs = vectors
    emb = Embeddings(words, vecs)
    kv = KeyedVectors(vecs.shape[1])
    kv.add_vectors(words, vecs)
    ours = emb.most_similar(["king", "woman"], ["man"], topn=5)
    theirs = kv.most_similar(positive=["king", "woman"], negative=["man"], topn=5)
    assert [w for w, _ in ours] == [w for w, _ in theirs]
    np.testing.assert_allclose([s for _, s in ours], [s for _, s in theirs], rtol=1e-5)
    ids = np.array([[emb.id("man"), emb.id("king"), emb.id("woman")]])
    pred = emb.solve_analogies(ids[:, 0], ids[:, 1], ids[:, 2], method="mul")
    assert words[pred[0]] == kv.most_similar_cosmul(positive=["king", "woman"], negative=["man"], topn=1)[0][0]
    assert emb.similarity("king", "queen") == pytest.approx(kv.similarity("king", "queen"), rel=1e-5)
    with pytest.raises(VocabularyError, match="not in vocabulary"):
        emb.most_similar("zzzz-unknown")


def test_malformed_vector_files(tmp_path):
    (tmp_path / "a").write_text("not a header\n")
    with pytest.raises(VectorsFormatError, match="count dim"):
        load_word2vec(tmp_path / "a")
    (tmp_path / "b").write_text("3 2\nx 1 2\ny 1 2\n")
    with pytest.raises(VectorsFormatError, match="found 2"):
        load_word2vec(tmp_path / "b")
    with pytest.raises(VectorsFormatError, match="not found"):
        load_word2vec(tmp_path / "missing")


def test_cli_eval_and_similar(tmp_path, vectors):
    words, vecs = vectors
    path = tmp_path / "v.bin"
    save_word2vec(path, words, vecs, binary=True)
    run = lambda *a: subprocess.run([sys.executable, "-m", "sgns_jax.cli", *a],
                                    capture_output=True, text=True, timeout=300)
    r = run("eval", str(path))
    assert r.returncode == 0, r.stderr
    assert "analogy (3CosAdd)" in r.stdout and "wordsim353" in r.stdout
    r = run("similar", str(path), "king", "--topn", "3")
    assert r.returncode == 0 and r.stdout.startswith("king: ")
    r = run("similar", str(path), "king", "qwertyuiop")
    assert r.returncode == 2 and "qwertyuiop" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


# --- download ----------------------------------------------------------------------------

def make_zip(content: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("text8", content)
    return buf.getvalue()


class Server:
    """A local HTTP server on 127.0.0.1 serving one body; ``truncate`` cuts it short while
    announcing the full length."""

    def __init__(self, body: bytes, truncate: int | None = None):
        self.body, self.truncate, self.hits = body, truncate, 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.hits += 1
                self.send_response(200)
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body[: outer.truncate] if outer.truncate else outer.body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/text8.zip"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


CONTENT = b" anarchism originated as a term of abuse" * 1000


def test_download_verifies_unzips_and_reuses_cache(tmp_path):
    body = make_zip(CONTENT)
    server = Server(body)
    try:
        kw = dict(url=server.url, zip_bytes=len(body), sha256=hashlib.sha256(CONTENT).hexdigest(),
                  quiet=True, timeout=10)
        path = download_text8(tmp_path, **kw)
        assert path.read_bytes() == CONTENT and server.hits == 1
        assert download_text8(tmp_path, **kw) == path and server.hits == 1
    finally:
        server.close()


def test_truncated_download_is_not_taken(tmp_path):
    body = make_zip(CONTENT)
    server = Server(body, truncate=len(body) // 2)
    try:
        with pytest.raises(DownloadError):
            download_text8(tmp_path, url=server.url, zip_bytes=len(body),
                           sha256=hashlib.sha256(CONTENT).hexdigest(), quiet=True, timeout=10)
    finally:
        server.close()
    assert not (tmp_path / "text8").exists() and not list(tmp_path.glob("*.part"))


def test_checksum_mismatch_is_not_taken(tmp_path):
    body = make_zip(CONTENT)
    server = Server(body)
    try:
        with pytest.raises(DownloadError, match="checksum mismatch"):
            download_text8(tmp_path, url=server.url, zip_bytes=len(body), sha256="0" * 64,
                           quiet=True, timeout=10)
    finally:
        server.close()
    assert not (tmp_path / "text8").exists() and not (tmp_path / "text8.zip").exists()


def test_offline_gives_one_line_error(tmp_path):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    r = subprocess.run([sys.executable, "-m", "sgns_jax.cli", "download", "text8", "--cache-dir",
                        str(tmp_path), "--url", f"http://127.0.0.1:{port}/text8.zip"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "cannot download" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert isinstance(DownloadError("x"), SgnsError)

"""The comparison experiment's quick mode end to end (a smoke test of the whole pipeline)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
# The experiments' runs are long enough to want XLA's optimised code (conftest.py turns the
# optimisations off for the tests' tiny runs).
ENV = {**os.environ, "JAX_DISABLE_MOST_OPTIMIZATIONS": "0"}
pytestmark = pytest.mark.slow  # whole experiment runs


def test_compare_losses_quick_writes_a_complete_report(tmp_path):
    out = tmp_path / "cl"
    r = subprocess.run([sys.executable, str(ROOT / "experiments" / "research" / "compare_losses.py"), "--quick",
                        "--out", str(out)], capture_output=True, text=True, timeout=600,
                       cwd=ROOT, env=ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    import runpy

    cfg = runpy.run_path(str(ROOT / "experiments" / "research" / "configs" / "compare_losses.py"))["get_config"](quick=True)
    strategies = set(cfg["strategies"])
    assert {"full", "hs", "ns5"} <= strategies
    records = [json.loads(l) for l in (out / "results.jsonl").read_text().splitlines()]
    finals = [x for x in records if x["kind"] == "final"]
    assert {x["strategy"] for x in finals} == strategies
    for x in finals:
        for key in ("heldout", "analogy", "wordsim353", "simlex999", "words_per_s", "pairs_per_s",
                    "seconds", "unigram"):
            assert math.isfinite(x[key]), (x["strategy"], key)
        # Better than the context-free unigram baseline on held-out text (mutant caught: a
        # model worse than uniform passed the old `< ln V + 1.5`).
        assert x["heldout"] < x["unigram"], (x["strategy"], x["heldout"], x["unigram"])
        if x["strategy"].startswith("ns"):
            assert x["heldout_raw"] > x["heldout"]  # the implied conditional is the fair score
    report = (out / "report.md").read_text()
    for s in strategies:
        assert f"| {s} |" in report
    assert "| unigram (no context) |" in report and "| uniform (ln V) |" in report
    assert "scored as softmax(u·h) (raw)" in report
    assert "Mikolov" in report and "Chen, Grangier & Auli" in report
    assert "HS-Huffman 55%" in report  # the subsampled row of their Table 1
    assert "Training time in these records:" in report
    kinds = {x["kind"] for x in records}
    assert {"calibration", "final", "point"} <= kinds
    for png in ("heldout_vs_time.png", "analogy_vs_time.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A rerun skips the finished cells.
    r2 = subprocess.run([sys.executable, str(ROOT / "experiments" / "research" / "compare_losses.py"), "--quick",
                         "--out", str(out)], capture_output=True, text=True, timeout=600, cwd=ROOT, env=ENV)
    assert r2.returncode == 0 and "heldout" not in r2.stdout.replace("report", "")
    assert len((out / "results.jsonl").read_text().splitlines()) == len(records)
    # Calibrations dropped (to be remeasured): measured again and kept (a rewrite of the
    # results after them once lost them), the cells whose budget did not change kept.
    (out / "results.jsonl").write_text("".join(json.dumps(x) + "\n" for x in records
                                               if x["kind"] != "calibration"))
    r3 = subprocess.run([sys.executable, str(ROOT / "experiments" / "research" / "compare_losses.py"), "--quick",
                         "--out", str(out)], capture_output=True, text=True, timeout=600, cwd=ROOT, env=ENV)
    assert r3.returncode == 0, r3.stderr[-3000:]
    again = [json.loads(l) for l in (out / "results.jsonl").read_text().splitlines()]
    assert {x["strategy"] for x in again if x["kind"] == "calibration"} == strategies
    assert {x["cell"] for x in again if x["kind"] == "final"} == {x["cell"] for x in finals}


def test_a_cell_that_diverges_is_recorded_and_the_grid_goes_on(tmp_path):
    """A seed the swept rate is too high for (the rate is chosen on seed 0) is recorded as
    diverged, left out of its cell's statistics and named in the report; the grid continues,
    and a rerun does not train it again (the full grid's dsoftmax seed 1 at lr 0.1 stopped
    the whole bundled grid at stop 35)."""
    out = tmp_path / "cl"
    script = ROOT / "experiments" / "research" / "compare_losses.py"
    wrapper = f"""
import runpy, sys
import sgns_jax.train.loop as loop
from sgns_jax.errors import TrainingDiverged
real = loop.train
def train(cfg, corpus=None, callback=None):
    if callback is not None and cfg.loss.name == "hs" and cfg.run.max_seconds is None:  # cells only
        raise TrainingDiverged("loss became inf in steps 1-16 (epoch 1); last good checkpoint: none")
    return real(cfg, corpus, callback)
loop.train = train
sys.argv = ["compare_losses.py", "--quick", "--out", {str(out)!r}]
runpy.run_path({str(script)!r}, run_name="__main__")
"""
    for _ in range(2):  # the second run: nothing left to train
        r = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True,
                           timeout=600, cwd=ROOT, env=ENV)
        assert r.returncode == 0, r.stderr[-3000:]
    records = [json.loads(l) for l in (out / "results.jsonl").read_text().splitlines()]
    diverged = [x for x in records if x["kind"] == "diverged"]
    assert [x["strategy"] for x in diverged] == ["hs"]  # recorded once, not retrained
    assert {x["strategy"] for x in records if x["kind"] == "final"} == {"full", "ns5"}
    report = (out / "report.md").read_text()
    assert "Diverged" in report and "hs/seed0" in report


def test_compare_losses_along_the_vocabulary_axis_quick(tmp_path):
    out = tmp_path / "cv"
    config = ROOT / "experiments" / "research" / "configs" / "compare_losses_vocab.py"
    r = subprocess.run([sys.executable, str(ROOT / "experiments" / "research" / "compare_losses.py"), "--quick",
                        "--config", str(config), "--out", str(out)], capture_output=True, text=True,
                       timeout=600, cwd=ROOT, env=ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "[0/12 cells]" in r.stdout  # progress
    records = [json.loads(l) for l in (out / "results.jsonl").read_text().splitlines()]
    finals = [x for x in records if x["kind"] == "final"]
    assert {(x["vocab"], x["budget"]) for x in finals} == {
        (v, b) for v in ("top300", "top1200") for b in ("words", "time")}
    assert all(x["commit"] and x["commit"] != "unknown" for x in finals)
    words = [x for x in finals if x["budget"] == "words"]
    assert all(40_000 <= x["words"] < 50_000 or x["capped"] for x in words)  # equal words
    # The cost column is XLA's count for the compiled step: the full softmax's flops per pair
    # grow with V (300 → 1,200 → 2,400 words) as V does.
    full = sorted((x["vocab_size"], x["flops_per_pair"]) for x in records
                  if x["kind"] == "cost" and x["strategy"] == "full")
    assert [v for v, _ in full] == [300, 1200, 2400]
    assert full[2][1] / full[0][1] == pytest.approx(8.0, rel=0.1)
    report = (out / "report.md").read_text()
    for section in ("## Along the vocabulary axis", "### Held-out −log p by V, budget `words`",
                    "### Held-out −log p by V, budget `time`", "### Cost per pair",
                    "Rankings that flip between the budgets", "Grave et al. 2017"):
        assert section in report
    for png in ("heldout_vs_vocab.png", "gap_vs_vocab.png", "cost_vs_vocab.png", "analogy_vs_vocab.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Each recorded cell (one vocabulary's: half the time) trains again to the same bits on this
    # machine, the time-budget cells from the words their calibration gave them.
    recheck = subprocess.run([sys.executable, str(ROOT / "experiments" / "research" / "recheck_cells.py"),
                              "--quick", "--config", str(config), "--results", str(out / "results.jsonl"),
                              "--vocab", "top300"], capture_output=True, text=True, timeout=600, cwd=ROOT, env=ENV)
    assert recheck.returncode == 0, recheck.stdout[-3000:] + recheck.stderr[-3000:]
    n = sum(x["vocab"] == "top300" for x in finals)
    assert n >= 4 and f"{n} of {n} cells the same bit for bit" in recheck.stdout


def test_a_rate_a_seed_diverged_at_is_not_chosen_and_its_cells_train_again():
    """The sweep chooses a rate on seed 0; when another seed diverges at it (or ends with
    blown-up weights, held-out above 2 ln V), the strategy's cells train again at the next best
    swept rate, the divergence stays on record, and cells done at the chosen rate stay done
    (the bundled grid's dsoftmax at lr 0.1: seed 1 diverged, seed 2 ended at 2.5e7 nats)."""
    import runpy

    cl = runpy.run_path(str(ROOT / "experiments" / "research" / "compare_losses.py"))
    cfg = {"strategies": {"a": {}, "b": {}}, "seeds": [0, 1, 2], "learning_rates": [0.05, 0.1]}
    sweep = [{"kind": "sweep", "vocab": "v", "budget": "time", "strategy": s, "learning_rate": lr,
              "heldout": h} for s, lr, h in (("a", 0.05, 7.2), ("a", 0.1, 7.1), ("b", 0.05, 7.3),
                                            ("b", 0.1, float("inf")))]

    def final(s, seed, lr, heldout=7.5):
        return {"kind": "final", "cell": f"v/time/{s}/seed{seed}", "vocab": "v", "budget": "time",
                "strategy": s, "seed": seed, "learning_rate": lr, "heldout": heldout, "vocab_size": 1000,
                "words": 1000}

    records = sweep + [final("a", 0, 0.1), final("b", 0, 0.05), final("b", 1, 0.05), final("b", 2, 0.05),
                       {"kind": "diverged", "cell": "v/time/a/seed1", "vocab": "v", "budget": "time",
                        "strategy": "a", "seed": 1, "learning_rate": 0.1}]
    blown = cl["_blown_up_as_diverged"](final("a", 2, 0.1, heldout=2.5e7))
    assert blown["kind"] == "diverged" and cl["_blown_up_as_diverged"](final("a", 2, 0.1))["kind"] == "final"
    chosen = cl["chosen_rates"](cfg, records + [blown], "v", "v", "time")
    assert chosen == {"a": 0.05, "b": 0.05}  # a's best, 0.1, had a diverged seed
    words = {"a": 1000, "b": 1000}
    final_words = records + [blown]
    todo = cl["cells_to_train"](cfg, final_words, "v", "time", chosen, words)
    assert todo == [("a", 0), ("a", 1), ("a", 2)]  # b's cells stay done
    # A budget recalibrated (other words): b's cells train again too.
    assert cl["cells_to_train"](cfg, final_words, "v", "time", chosen, {"a": 1000, "b": 2000}) == todo + [
        ("b", 0), ("b", 1), ("b", 2)]
    # Before the divergence the sweep's best is chosen and only the missing cells train.
    assert cl["chosen_rates"](cfg, sweep, "v", "v", "time") == {"a": 0.1, "b": 0.05}
    # No stable rate left: the lowest, where a diverged seed counts as done.
    both = records + [{**records[-1], "learning_rate": 0.05}]
    chosen = cl["chosen_rates"](cfg, both, "v", "v", "time")
    assert chosen["a"] == 0.05 and ("a", 1) not in cl["cells_to_train"](cfg, both, "v", "time", chosen, words)


def test_the_report_says_when_an_equal_time_budget_did_not_hold():
    """An equal-time budget is words from a calibrated rate; when the cells it bound trained far
    from its seconds (a calibration measured beside another job), the report says so. Cells that
    finished their epochs first, and equal-words cells not cut by the cap, are not bound by it."""
    import runpy

    cl = runpy.run_path(str(ROOT / "experiments" / "research" / "compare_losses.py"))
    cfg = {"budgets": {"time": {"seconds": 20.0}, "words": {"words": 1000, "seconds_cap": 90.0}}}

    def final(strategy, seconds, budget="time", fraction=0.5, capped=False, vocab="v"):
        return {"kind": "final", "vocab": vocab, "budget": budget, "strategy": strategy,
                "seconds": seconds, "epoch_fraction": fraction, "capped": capped}

    held = [final("a", 19.0), final("a", 22.0), final("b", 8.0, fraction=1.0),
            final("c", 3.0, budget="words"), final("c", 88.0, budget="words", capped=True)]
    lines = cl["budgets_held"](cfg, held)
    assert lines[0].startswith("Budget `time` held: the 2 cells") and "19–22 s" in lines[0]
    assert lines[1] == "Budget `words` held: the one cell its 90 s bound trained 88 s, within 25%."
    lines = cl["budgets_held"](cfg, held + [final("d", 36.0, vocab="w"), final("d", 34.0, vocab="w")])
    assert lines[0].startswith("**Budget `time` did not hold**") and "d at `w` 35 s" in lines[0]
    assert "a at" not in lines[0]


def test_a_results_file_cut_in_a_record_by_a_kill_loses_that_record_only(tmp_path, capsys):
    """The grid appends a record per line; a kill in the middle of a write leaves a cut last
    line. Reading drops it (its work is redone), mends the file, and the next append starts a
    line of its own."""
    import runpy

    cl = runpy.run_path(str(ROOT / "experiments" / "research" / "compare_losses.py"))
    path = tmp_path / "results.jsonl"
    records = [{"kind": "sweep", "vocab": "v", "budget": "time", "strategy": s, "learning_rate": 0.1,
                "heldout": 7.0} for s in ("a", "b")]
    for r in records:
        cl["append"](path, r)
    path.write_text(path.read_text() + '{"kind": "final", "cell": "v/ti')
    assert cl["read_results"](path) == records
    assert "cut last record" in capsys.readouterr().err
    cl["append"](path, {**records[0], "strategy": "c"})
    assert [r["strategy"] for r in cl["read_results"](path)] == ["a", "b", "c"]
    # A whole file reads as it is and is left untouched.
    before = path.read_bytes()
    assert len(cl["read_results"](path)) == 3 and path.read_bytes() == before
    # A bad line inside the file cannot come from a kill: a one-line error, the file untouched.
    lines = before.decode().splitlines(keepends=True)
    path.write_text(lines[0] + '{"kind": sweep}\n' + lines[2])
    with pytest.raises(SystemExit, match=r"results.jsonl: line 2 is not a JSON record"):
        cl["read_results"](path)
    assert path.read_text() == lines[0] + '{"kind": sweep}\n' + lines[2]


def test_reports_name_the_corpus_relative_to_the_repository():
    import runpy

    cl = runpy.run_path(str(ROOT / "experiments" / "research" / "compare_losses.py"))
    name = cl["corpus_name"]({"corpus": str(ROOT.parent / "shared" / "data" / "mid.txt.gz")})
    assert name.startswith("`../shared/data/mid.txt.gz`") and str(ROOT) not in name


def test_gpu_benchmark_runs_in_cpu_mode(tmp_path):
    out = tmp_path / "gpu.json"
    # The device check's test runs bench_gpu's pair, hs and full cells; these are the others.
    r = subprocess.run([sys.executable, str(ROOT / "experiments" / "perf" / "bench_gpu.py"), "--tiny",
                        "--strategies", "window,batch,adaptive", "--matmul-dtype", "bfloat16",
                        "--out", str(out)],
                       capture_output=True, text=True, timeout=600, cwd=ROOT, env=ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["machine"]["bandwidth_bytes_per_s"] > 0 and data["machine"]["matmul_flops_per_s"] > 0
    rows = data["rows"]
    assert {(x["strategy"], x["devices"]) for x in rows} == {
        (s, d) for s in ("window", "batch", "adaptive") for d in (1, 2)}
    for x in rows:
        # (Pairs per corpus word can be below 1: a 500-word vocabulary is mostly subsampled.)
        assert x["vocab"] == 500 and x["words_per_s"] > 0 and x["pairs_per_s"] > 0
        assert 0 < x["share_of_roofline"] and math.isfinite(x["roofline_words_per_s"])
        # bfloat16 products where the strategy has matrix products, float32 elsewhere
        assert x["matmul_dtype"] == ("bfloat16" if x["strategy"] in ("batch", "full", "adaptive") else "float32")


def test_the_device_check_runs_in_its_cpu_mode(tmp_path):
    out = tmp_path / "dc"
    r = subprocess.run([str(ROOT / "experiments" / "device_check.sh"), "--tiny", "--out-dir", str(out)],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path,
                       env={**ENV, "PYTHON": sys.executable})
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads((out / "device_check.json").read_text())
    assert result["device"]["platform"] == "cpu" and result["device"]["jax"]
    sections = result["sections"]
    assert sections["device"][0]["bandwidth_bytes_per_s"] > 0
    assert {x["cell"] for x in sections["lowering"]} == {"pair", "hs", "full"}
    assert all(x["status"] == "ok" and not x["custom_calls"] for x in sections["lowering"])
    cells = sections["throughput"]
    assert all(x["status"] == "ok" for x in cells), [x.get("error") for x in cells]
    assert {x["cell"] for x in cells} >= {"pair V=500 1 dev float32", "full V=500 2 dev bfloat16"}
    assert all(x["xla_flops_per_example"] > 0 and x["words_per_s"] > 0 for x in cells)
    assert [x["pipeline"] for x in sections["quality"]] == ["host", "device"]
    assert all(x["status"] == "ok" and 0 <= x["analogy"] <= 1 and x["words_per_s"] > 0
               for x in sections["quality"]), sections["quality"]
    assert "| throughput |" not in (out / "device_check.md").read_text()  # sections are headings
    assert "## throughput" in (out / "device_check.md").read_text()


def test_a_failing_device_check_cell_is_recorded_and_the_rest_go_on(tmp_path):
    sys.path.insert(0, str(ROOT / "experiments" / "perf"))
    from device_check import Check

    check = Check(tmp_path, budget_seconds=60)
    check.cell("s", "broken", lambda: 1 / 0)
    check.cell("s", "fine", lambda: {"x": 1.0})
    late = Check(tmp_path, budget_seconds=-1)
    late.cell("s", "too late", lambda: {"x": 1.0})
    rows = check.result["sections"]["s"]
    assert rows[0]["status"] == "failed" and rows[0]["error"].startswith("ZeroDivisionError")
    assert rows[1]["status"] == "ok" and rows[1]["x"] == 1.0
    assert late.result["sections"]["s"][0]["status"] == "skipped"


def test_gpu_benchmark_traffic_model():
    sys.path.insert(0, str(ROOT / "experiments" / "perf"))
    from bench_gpu import traffic_per_pair

    # D = 100, K = 5: a row is 1,200 bytes (gather 4·D, scatter-add 8·D), a dot 600 flops.
    assert traffic_per_pair("pair", 100, 10, 64, 0, 64) == (7 * 1200, 6 * 600)
    assert traffic_per_pair("window", 100, 10, 64, 0, 64) == (12 / 6 * 1200, 6 * 600)
    assert traffic_per_pair("hs", 100, 10, 64, 12.0, 64) == (3 * 1200, 12.0 * 600)  # path / 6 pairs
    # full: the V×D output table read twice and written once per batch of B pairs.
    assert traffic_per_pair("full", 100, 1000, 250, 0, 64) == (12 * 1000 * 100 / 250 + 2400, 1000 * 600)


def test_memory_does_not_grow_from_epoch_to_epoch(tmp_path):
    """Peak RSS per epoch (the kernel's high-water mark, reset between epochs) stays flat: a
    pipeline or merge that kept something per epoch (a leaked chunk list, a malloc arena per
    epoch thread, as once happened) shows as growth. Measured by bench_memory.py's own phases."""
    out = tmp_path / "mem.json"
    corpus = ROOT / "sgns_jax" / "resources" / "wiki.txt.gz"
    r = subprocess.run([sys.executable, str(ROOT / "experiments" / "perf" / "bench_memory.py"), "--corpus", str(corpus),
                        "--epochs", "4", "--sides", "sgns_jax", "--dim", "50", "--out", str(out)],
                       capture_output=True, text=True, timeout=600, cwd=ROOT, env=ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    phases = {p["phase"]: p["peak_mb"] for p in json.loads(out.read_text())["runs"][0]["phases"]}
    assert {"import", "corpus scan", "setup", "epoch 1", "epoch 4", "write"} <= set(phases)
    # From epoch 2: the prefetch queue (bounded) fills at its own pace, sooner or later in
    # epoch 1 depending on the machine's load (+34 MB in epoch 2 once, beside other jobs).
    second = phases["epoch 2"]
    for epoch in (3, 4):
        assert phases[f"epoch {epoch}"] <= second * 1.05 + 8, phases


def test_large_vocab_parallel_comparison_runs_every_way(tmp_path):
    out = tmp_path / "ab.json"
    r = subprocess.run([sys.executable, str(ROOT / "experiments" / "perf" / "ab_large_vocab_parallel.py"),
                        "--vocab", "2000", "--tokens", "200000", "--dim", "16", "--chunks", "4",
                        "--out", str(out)], capture_output=True, text=True, timeout=600, cwd=ROOT, env=ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert [x["way"] for x in rows] == ["single", "workers", "vocab", "columns"]
    assert all(x["vocab"] == 2000 and x["chunks"] >= 4 and x["ms_per_chunk"] > 0 for x in rows)


def test_output_layer_benchmark_runs_in_quick_mode(tmp_path):
    out = tmp_path / "layers.json"
    r = subprocess.run([sys.executable, str(ROOT / "experiments" / "research" / "bench_output_layers.py"), "--quick",
                        "--parts", "step,speed,epochs,cutoffs", "--seeds", "0", "--out", str(out)],
                       capture_output=True, text=True, timeout=600, cwd=ROOT, env=ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    by_part = {}
    for x in rows:
        by_part.setdefault(x["part"], []).append(x)
    assert [x["strategy"] for x in by_part["step"]] == ["adaptive", "dsoftmax", "full", "hs"]
    assert all(x["us_per_pair"] > 0 for x in by_part["step"])
    assert [x["strategy"] for x in by_part["speed"]] == ["adaptive", "dsoftmax", "full", "hs"]
    assert [x["strategy"] for x in by_part["epochs"]] == ["adaptive", "dsoftmax"]
    assert len(by_part["cutoffs"]) == 4
    assert all(x["words_per_s"] > 0 for part in ("speed", "epochs", "cutoffs") for x in by_part[part])
    assert all(math.isfinite(x["heldout"]) for part in ("epochs", "cutoffs") for x in by_part[part])


def test_memory_benchmark_streams_gensim_as_users_do(tmp_path):
    """gensim's baseline streams the file: Text8Corpus for a text8-style one-line corpus (where
    LineSentence would read the whole line into memory), LineSentence for lines of sentences."""
    import runpy

    bench = runpy.run_path(str(ROOT / "experiments" / "perf" / "bench_memory.py"))
    assert bench["one_line_corpus"](str(ROOT / "sgns_jax" / "resources" / "wiki.txt.gz"))
    lines = tmp_path / "lines.txt"
    lines.write_text("a b c\nd e f\n" * 100)
    assert not bench["one_line_corpus"](str(lines))

"""Data parallelism on 8 simulated CPU devices (each check runs in its own process, since the
device count is fixed when JAX starts)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
CHECKS = HERE / "multidevice_checks.py"
pytestmark = pytest.mark.slow  # each check starts JAX in a subprocess with simulated devices


def run_check(*args, devices=8, timeout=600):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               JAX_PLATFORMS="cpu", PYTHONPATH=str(HERE.parent))
    r = subprocess.run([sys.executable, str(CHECKS), *map(str, args)], capture_output=True,
                       text=True, timeout=timeout, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    line = [l for l in r.stdout.splitlines() if l.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


@pytest.mark.parametrize("update", ["sparse", "dense"])
def test_one_step_on_2_and_8_devices_equals_one_device(update):
    from sgns_jax.losses import registered_variants

    from multidevice_checks import DENSE_STRATEGIES, SHAPE_OPTIONS, variants

    results = run_check("one_step", update)
    strategies = {name for name, _ in registered_variants()}
    # sparse: every variant but shape-only ones; dense: the dense strategies' first variants;
    # 2 devices: each strategy's first, sparse
    expected = (sum(first or not set(kw) <= SHAPE_OPTIONS for _, kw, first in variants())
                if update == "sparse" else len(DENSE_STRATEGIES))
    assert len(results) == expected
    assert sum(2 in r["devices"] for r in results.values()) == (len(strategies) if update == "sparse" else 0)
    for name, r in results.items():
        assert r["moved"] > 1e-3, name           # the step did change the parameters
        assert r["max_diff"] <= 1e-6, (name, r)  # an N-times-scaled gradient would fail this


def test_training_on_4_devices_follows_the_1_device_loss_curve():
    curves = run_check("loss_curve")
    one, four = curves["1"], curves["4"]
    assert len(one) == len(four) == 4
    for a, b in zip(one, four):
        assert abs(a - b) <= 1e-5 * abs(a)  # stated tolerance: relative 1e-5 per epoch


def test_sparse_step_has_no_table_sized_all_reduce():
    r = run_check("hlo")
    assert r["ns-sparse"]["table_all_reduces"] == 0 and r["ns-sparse"]["all_gathers"] > 0
    assert r["hs-sparse"]["table_all_reduces"] == 0
    assert r["ns-dense"]["table_all_reduces"] > 0  # the check does see them where they are


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two_processes(corpus, out_name, env, *extra):
    port = free_port()
    procs = [subprocess.Popen([sys.executable, str(CHECKS), "distributed", str(corpus), str(i),
                               str(port), str(corpus.parent / f"{out_name}{i}.txt"), *map(str, extra)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for i in range(2)]
    try:
        outs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            p.kill()
    results = []
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
        results.append(json.loads([l for l in out.splitlines() if l.startswith("RESULT ")][-1][7:]))
    return results


@pytest.mark.parametrize("parallelism,per_process", [("data", 2), ("vocab", 3)])
def test_two_processes_with_jax_distributed_match_one_process_and_resume_bit_for_bit(
        tmp_path, parallelism, per_process):
    """Two processes, data parallel over 2 × 2 CPU devices, or the tables' rows split over
    2 × 3 devices (40 words: 7 rows a device, 2 of them padding): the vectors equal one
    process's with as many devices, only process 0 writes them; a SIGINT to process 1 alone stops both at the
    same chunk (they agree on every stop, interrupt and checkpoint), the checkpoint is written
    (split tables: each process its own rows, in files of their own, nothing gathered), and
    the resumed run's vectors are the uninterrupted run's, byte for byte."""
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={per_process}",
               JAX_PLATFORMS="cpu", PYTHONPATH=str(HERE.parent))
    devices = 2 * per_process
    corpus = tmp_path / "tiny.txt"
    subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(HERE)!r}); "
                    f"from multidevice_checks import tiny_corpus; tiny_corpus({str(tmp_path)!r})"],
                   check=True, env=env, timeout=120)
    for result in run_two_processes(corpus, "v", env, "", parallelism):
        assert result == {**result, "devices": devices, "processes": 2}
    single = run_check("single", corpus, tmp_path / "single.txt", parallelism, devices, devices=devices)
    assert single["devices"] == devices
    assert (tmp_path / "v0.txt").read_bytes() == (tmp_path / "single.txt").read_bytes()
    assert not (tmp_path / "v1.txt").exists()  # only process 0 writes

    results = run_two_processes(corpus, "r", env, tmp_path / "ckpt", parallelism)
    assert [r["interrupted_after_chunks"] for r in results] == [3, 3], results
    assert all("checkpoint saved" in r["message"] for r in results)
    assert 0 < results[0]["resumed_words"] < results[0]["words"]
    if parallelism == "vocab":  # rows 0–20 from process 0's devices, 21–39 from process 1's
        rows = sorted(tuple(map(int, f.split(".")[0].split("-")[2:]))
                      for f in results[0]["checkpoint_files"] if f.startswith("checkpoint-w_in-"))
        assert rows == [(0, 7), (7, 14), (14, 21), (21, 28), (28, 35), (35, 40)], results[0]
    assert (tmp_path / "r0.txt").read_bytes() == (tmp_path / "v0.txt").read_bytes()
    assert not (tmp_path / "r1.txt").exists()


def test_vocabulary_sharded_tables_equal_the_unsharded_step():
    """Model parallelism: rows split over 8 devices (and 2, for each strategy's first variant),
    each holding V/N rows — every registered variant whose lookups are rows (a loss reading whole
    tables cannot shard them)."""
    import numpy as np

    from sgns_jax.losses import make_output_layer, registered_variants
    from sgns_jax.engine.runners import _whole_table_roles

    results = run_check("vocab_sharded")
    row_variants = [(n, kw) for n, kw in registered_variants()
                    if not any(_whole_table_roles(make_output_layer(n, np.arange(9, 0, -1), **kw)))]
    assert len(results) == len(row_variants) >= 6
    for name, r in results.items():
        assert r["moved"] > 1e-3 and r["max_diff"] <= 1e-6, (name, r)


def test_vocabulary_sharded_training_run_equals_one_device():
    r = run_check("vocab_sharded_training")
    assert r["shapes_equal"] and r["max_diff"] <= 1e-6
    assert r["losses"][0] == pytest.approx(r["losses"][1], rel=1e-6)
    # SIGINT, checkpoint, --resume: the uninterrupted sharded run's tables exactly
    assert r["interrupted"] and r["resumed_words"] > 0 and r["resume_diff"] == 0.0


def test_worker_streams_merge_their_updates_and_repeat():
    """Hogwild-style worker streams (two CPU devices): a round equals base + Σ (worker − base)
    with each worker's chunks run on its own — merging whole tables or only the touched rows —
    and leaves every replica equal to the base; the same run twice gives the same vectors; the
    loss follows the one-stream run's (the updates differ by the staleness only); a run
    interrupted and resumed from its checkpoint ends with the uninterrupted run's vectors."""
    r = run_check("workers", devices=2)
    for chunks_per_worker in (1, 2):
        for merge in ("whole", "rows"):  # whole tables (small V) and touched rows (large V)
            case = f"{chunks_per_worker}_{merge}"
            assert r[f"moved_r{case}"] > 1e-3
            assert r[f"round_diff_r{case}"] <= 1e-6, r
            assert r[f"round_step_r{case}"] == 2 * (chunks_per_worker + 1)  # T = 2
            assert r[f"replica_diff_r{case}"] == 0.0
    # On CPU devices whole tables move by aliasing: the device_put path's tables bit for bit,
    # and the same buffers in every round (no table allocated per round)
    assert r["alias_vs_device_put_diff"] == 0.0
    assert r["alias_buffer_sets"] == 1
    assert r["tail_diff"] == 0.0  # a round of one worker: its chunks alone, every replica too
    assert r["after_tail_diff"] <= 1e-6, r  # and the round after it: base + Σ (worker − base)
    assert r["repeat_diff"] == 0.0
    assert r["workers_vs_one"] > 0  # a different (stale) update order, not a copy of one stream
    assert r["examples"][0] == r["examples"][1]  # every chunk trained exactly once
    for two, one in zip(*r["losses"]):
        assert abs(two - one) <= 0.05 * one, r["losses"]
    assert r["interrupted"] and r["resume_diff"] == 0.0  # SIGINT, checkpoint, --resume

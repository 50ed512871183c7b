import os
import tempfile

# Tests run on the CPU with one device unless a test starts its own process with more.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Encoded corpora are cached in a throwaway folder, not in the user's ~/.cache.
os.environ.setdefault("SGNS_JAX_CACHE", tempfile.mkdtemp(prefix="sgns_jax-test-cache-"))
# The tests' runs are tiny: compiling is most of their time, and XLA:CPU's LLVM optimisations
# are most of the compiling (the training tests 37% faster without them). Set for every
# process the tests start too — an in-process run and a CLI run must give the same bytes, and
# the optimisations change the last bits — except the experiment scripts, whose runs are long
# enough to need the optimised code (tests/test_experiments.py sets it back). What the
# optimisations do to speed is the benchmarks' business (experiments/perf), not the tests'.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")


def pytest_configure(config):
    """Compiled executables cached for this test process alone (a folder of its own, set in
    its JAX config, so subprocesses do not inherit it): train() builds new jitted functions on
    every call, and the tests train the same tiny configurations many times; each identical
    computation then compiles once. Not shared between processes: JAX writes cache entries
    in place, and a concurrent reader saw half-written ones."""
    import jax

    jax.config.update("jax_compilation_cache_dir", tempfile.mkdtemp(prefix="sgns_jax-test-xla-"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)

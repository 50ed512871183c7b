import os
import tempfile

# Tests run on the CPU with one device unless a test starts its own process with more.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Encoded corpora are cached in a throwaway folder, not in the user's ~/.cache.
os.environ.setdefault("SGNS_JAX_CACHE", tempfile.mkdtemp(prefix="sgns_jax-test-cache-"))

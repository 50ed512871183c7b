"""Run ``sgns-jax`` with a fault injected, for tests/test_faults.py:

    python tests/fault_harness.py FAULT -- ARGS...

FAULT is one of
  kill-at-commit=N@DIR  SIGKILL this process when the N-th finished temp file (0-based) in DIR is
                        about to be renamed into place (io_utils.PendingFile.commit): N = 0 stops
                        when every file of a set is written but none renamed, N = k after k
                        renames.
  file-size-limit=BYTES writes beyond BYTES fail with EFBIG (RLIMIT_FSIZE), as on a full disk.
  none                  no fault.
"""

import os
import resource
import signal
import sys


def main() -> int:
    fault, separator, *args = sys.argv[1:]
    assert separator == "--", __doc__
    kind, _, value = fault.partition("=")
    if kind == "kill-at-commit":
        from sgns_jax import io_utils

        at, _, directory = value.partition("@")
        commits = [0]
        real_commit = io_utils.PendingFile.commit

        def commit(self):
            if os.path.samefile(self.path.parent, directory):
                if commits[0] == int(at):
                    os.kill(os.getpid(), signal.SIGKILL)
                commits[0] += 1
            real_commit(self)

        io_utils.PendingFile.commit = commit
    elif kind == "file-size-limit":
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failing write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (int(value), int(value)))
    elif kind != "none":
        raise SystemExit(f"unknown fault {fault!r}")
    from sgns_jax.cli import main as cli_main

    return cli_main(args)


if __name__ == "__main__":
    sys.exit(main())

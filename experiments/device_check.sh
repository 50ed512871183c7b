#!/usr/bin/env bash
# The prepared device check (issue 26, item 4). On a GPU or TPU host, from the repository root:
#
#     experiments/device_check.sh                  # writes docs/device_check/device_check.{json,md}
#     experiments/device_check.sh --out-dir DIR    # elsewhere; other options: experiments/perf/device_check.py --help
#     experiments/device_check.sh --tiny --out-dir /tmp/dc   # seconds on a CPU (what the tests run)
#
# Python: $PYTHON if set; else the first of python3, .venv/bin/python whose JAX sees a GPU or TPU
# and has optax (an accelerator image's own Python: nothing is installed, the project is put on
# PYTHONPATH); else, on a host with a package index, a new .venv-device with this project and
# jax[cuda12] (where nvidia-smi answers) or jax[tpu] (on a TPU VM), at the project's jax version.
# Time: at most --budget-seconds (default 420) of cells after start-up; about 8 minutes in all
# with an installation.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
args=("$@")
[[ " $* " == *" --out-dir "* ]] || args+=(--out-dir docs/device_check)
PY="${PYTHON:-}"
if [[ -z "$PY" && " $* " == *" --tiny "* ]]; then
  if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
if [[ -z "$PY" ]]; then
  for cand in python3 .venv/bin/python; do
    if command -v "$cand" >/dev/null && "$cand" -c 'import jax, optax; assert jax.default_backend() != "cpu"' 2>/dev/null; then
      PY=$cand
      break
    fi
  done
fi
if [[ -z "$PY" ]]; then
  echo "device_check: no Python whose JAX sees an accelerator; installing into .venv-device" >&2
  python3 -m venv .venv-device
  .venv-device/bin/python -m pip install -q -e ".[experiments]"
  v=$(.venv-device/bin/python -c 'import jax; print(jax.__version__)')
  if command -v nvidia-smi >/dev/null; then
    .venv-device/bin/python -m pip install -q "jax[cuda12]==$v"
  elif ls /dev/accel* >/dev/null 2>&1 || [[ -n "${TPU_NAME:-}" ]]; then
    .venv-device/bin/python -m pip install -q "jax[tpu]==$v"
  fi
  PY=.venv-device/bin/python
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" experiments/perf/device_check.py "${args[@]}"

#!/usr/bin/env bash
# Install pathxai with its dev extra into .venv, then run the whole test suite.
# pytest exit code 5 ("no tests collected") is a broken setup, reported as such, never a pass.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh dev || { echo "install failed" >&2; exit 1; }
.venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests: the test setup is broken (exit 5 treated as failure)" >&2
    exit 1
fi
exit "$rc"

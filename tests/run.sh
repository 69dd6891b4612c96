#!/usr/bin/env bash
# The whole test suite from a fresh clone: installs what it needs (a venv with the locked
# Python packages, the npm packages, and, as root, Debian's Chromium when it is missing),
# builds the browser pages, runs the frontend unit tests (Vitest), then everything else
# (pytest: unit, API, real-process system tests and the end-to-end browser tests).
# Extra arguments go to pytest, e.g. `bash tests/run.sh -k teacher`.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
  else
    echo "tests/run.sh: the browser tests need Chromium (apt-get install chromium)" >&2
    exit 1
  fi
fi

bash requirements/install.sh
# Ralph, the LRS the xAPI tests send statements to, in a venv of its own (tests/lrs.py).
python3 -m venv .venv-ralph
.venv-ralph/bin/pip install -q 'ralph-malph[cli,lrs,backend-lrs]==5.1.0' requests
(cd frontend && npm ci --no-audit --no-fund --loglevel=error && npm run build && npm test)
.venv/bin/python -m pytest "$@"

#!/usr/bin/env bash
# The whole test suite from a fresh clone: installs what it needs (a venv with the locked
# Python packages, the npm packages, and, as root, Debian's Chromium when it is missing),
# builds the browser pages, then runs the frontend unit tests (Vitest) beside everything else
# (pytest: unit, API, real-process system tests and the end-to-end browser tests).
# Extra arguments go to pytest, e.g. `bash tests/run.sh -k teacher`; TEST_PROCESSES sets how
# many test processes run at once (default 4).
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

# Ralph, the LRS the xAPI tests send statements to, in a venv of its own (tests/lrs.py):
# installed in the background while .venv is made and the pages build.
ralph_log=$(mktemp)
(python3 -m venv .venv-ralph &&
  .venv-ralph/bin/pip install -q 'ralph-malph[cli,lrs,backend-lrs]==5.1.0' requests) >"$ralph_log" 2>&1 &
ralph=$!
bash requirements/install.sh
# npm ci again only when package-lock.json changed since node_modules was installed.
(cd frontend &&
  { [ node_modules/.package-lock.json -nt package-lock.json ] ||
    npm ci --no-audit --no-fund --loglevel=error; } &&
  npm run build)
wait "$ralph" || { cat "$ralph_log" >&2; exit 1; }
rm -f "$ralph_log"
# The pages' unit tests (Vitest) run beside pytest's start (which mostly waits for the stacks
# it starts); their report is printed when both are done, and either failing fails the run.
vitest_log=$(mktemp)
(cd frontend && npm test) >"$vitest_log" 2>&1 &
vitest=$!
# Four test processes on two cores: most of the suite waits (on real processes, flush intervals,
# outages), so the waits overlap; each work unit (a module, or the modules sharing a stack) runs
# whole in one process (tests/conftest.py). `-n 0` runs everything in this process.
status=0
.venv/bin/python -m pytest -n "${TEST_PROCESSES:-4}" --dist loadscope "$@" || status=$?
vitest_status=0
wait "$vitest" || vitest_status=$?
cat "$vitest_log" && rm -f "$vitest_log"
[ "$vitest_status" -eq 0 ] || { echo "tests/run.sh: the frontend's unit tests failed" >&2; exit 1; }
exit "$status"

#!/usr/bin/env bash
# Makes .venv (when missing) with the versions CI tested: requirements/lock.txt pins the
# `test` extra (which includes `embedded`), then the project itself goes in without resolving
# again. Run again at any time: it brings .venv back to the lock.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
.venv/bin/pip install -q -r requirements/lock.txt
.venv/bin/pip install -q --no-deps -e .

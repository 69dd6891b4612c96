#!/usr/bin/env bash
# Makes .venv (when missing) with the versions CI tested: requirements/lock.txt pins the
# `test` extra (which includes `embedded`), then the project itself goes in without resolving
# again. Run again at any time: it brings .venv back to the lock. A stamp in .venv remembers
# the lock and pyproject.toml it was made from, so a second run with neither changed returns
# at once (delete .venv/.installed-from to force a reinstall). The install compiles every
# module (a machine with PYTHONDONTWRITEBYTECODE would otherwise compile them again in every
# process the tests start).
set -euo pipefail
cd "$(dirname "$0")/.."

stamp=.venv/.installed-from
want=$(cat requirements/lock.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
python3 -m venv .venv
.venv/bin/pip install -q -r requirements/lock.txt
.venv/bin/pip install -q --no-deps -e .
echo "$want" >"$stamp"

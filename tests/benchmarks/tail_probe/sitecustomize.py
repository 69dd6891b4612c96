"""A probe of the web process's tail, for benchmarks only: put this directory on PYTHONPATH and
set TAIL_PROBE_OUT to a file; a `uvicorn` process started so (the stack's web) then appends a
JSON line there every 2 s with its CPU time, heartbeats accepted, the collector's passes per
generation (count, wall and CPU seconds, each pass over 2 ms), the event loop's lag (a task that
sleeps 5 ms and measures how late it wakes) and how many views the ingest and read scripts
answered from the caller's cached state ('cache') or not ('preview', 'state').

    PYTHONPATH=tests/benchmarks/tail_probe TAIL_PROBE_OUT=/tmp/probe.jsonl \\
        .venv/bin/python -m tests.benchmarks.loadgen --capacity ...

Any other process, or no TAIL_PROBE_OUT, and this file does nothing.
"""

from __future__ import annotations

import os
import sys

if os.environ.get("TAIL_PROBE_OUT") and "uvicorn" in os.path.basename(sys.argv[0]):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__)))))
    from tests.benchmarks.tail_probe_impl import install

    install(os.environ["TAIL_PROBE_OUT"])

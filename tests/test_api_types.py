"""The frontend's API types (frontend/src/api-schema.d.ts) are generated from the OpenAPI
schema: this fails when the API changed and nobody ran `npm run gen:api` in frontend/.

Needs Node.js and frontend/node_modules (tests/run.sh installs them).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

FRONTEND = Path(__file__).resolve().parent.parent / "frontend"


def test_generated_api_types_are_current() -> None:
    node = shutil.which("node")
    assert node, "Node.js is needed to check the generated API types"
    assert (FRONTEND / "node_modules" / "openapi-typescript").is_dir(), (
        "run `npm ci` in frontend/ (tests/run.sh does)"
    )
    result = subprocess.run(
        [node, "scripts/gen-api-types.mjs", "--check"],
        cwd=FRONTEND,
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr + result.stdout

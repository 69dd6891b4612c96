"""Print the API's OpenAPI schema (JSON) without starting any service: the FastAPI app is built
and asked for its schema; nothing connects to Redis or MongoDB (that happens at start-up only).

Development settings, so the demo sign-in routes (/dev/*) the pages use are included.
Run by `npm run gen:api` (frontend/scripts/gen-api-types.mjs).
"""

import json
import sys

from ingest.app import create_app
from shared.settings import Settings

settings = Settings(_env_file=None, environment="development")  # type: ignore[call-arg]
json.dump(create_app(settings).openapi(), sys.stdout, indent=1, sort_keys=True)
sys.stdout.write("\n")

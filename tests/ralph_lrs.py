"""Serve Ralph's LRS (`ralph.api:app`) over its file-system backend, for the xAPI tests.

Run with Ralph's own venv: `.venv-ralph/bin/python tests/ralph_lrs.py PORT DATA_DIR` (with
`RALPH_APP_DIR` naming the folder of the `ralph auth` credentials). It is what
`ralph runserver -b fs -p PORT --fs-default-directory-path DATA_DIR` serves, with two
differences: no auto-reloader, and one fix. Ralph 5.1's file-system backend writes with
operation type `create`, which refuses to write a file that exists: only the first POST to the
LRS succeeds and every later one answers 500 ("already exists and overwrite is not allowed").
Appending is what the LRS needs, so the default operation is set to `append`. Everything else
(authentication, validation, duplicate-id handling, queries) is Ralph's own code.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    port, data_dir = int(sys.argv[1]), sys.argv[2]
    os.environ["RALPH_RUNSERVER_BACKEND"] = "fs"
    os.environ["RALPH_BACKENDS__LRS__FS__DEFAULT_DIRECTORY_PATH"] = data_dir
    import uvicorn
    from ralph.backends.data.base import BaseOperationType
    from ralph.backends.data.fs import FSDataBackend

    FSDataBackend.default_operation_type = BaseOperationType.APPEND
    uvicorn.run("ralph.api:app", host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()

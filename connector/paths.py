"""Where the declarative files live: ``mappings/`` and ``schemas/``.

They sit beside the package in a checkout (and in the container image, which copies the
repository layout); ``CONNECTOR_MAPPINGS_DIR`` / ``CONNECTOR_SCHEMAS_DIR`` override both.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def mappings_dir() -> Path:
    return Path(os.environ.get("CONNECTOR_MAPPINGS_DIR") or ROOT / "mappings")


def schemas_dir() -> Path:
    return Path(os.environ.get("CONNECTOR_SCHEMAS_DIR") or ROOT / "schemas")

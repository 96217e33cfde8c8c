"""The image's HEALTHCHECK: GET /healthz on the port and host the connector is configured with
(CONNECTOR_HTTP_PORT, CONNECTOR_HTTP_HOST or the config file), not a port written into the image.

Exit 0 when healthy, 1 otherwise (Docker's contract). Run as ``python /app/healthcheck.py``.
"""

from __future__ import annotations

import sys
import urllib.request


def main() -> int:
    try:
        from connector.config import load_settings

        settings = load_settings()
        host = settings.http_host if settings.http_host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        with urllib.request.urlopen(f"http://{host}:{settings.http_port}/healthz", timeout=4) as response:
            return 0 if response.status == 200 else 1
    except Exception as exc:  # any failure is "unhealthy", with the reason in docker inspect
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())

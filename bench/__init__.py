"""``python -m bench``: throughput and memory of the connector as ratios against baselines
measured in the same run on the same bytes (the machines are shared and noisy, so absolute
figures say little). See ``bench/__main__.py`` for the figures and README "Performance"."""


def ensure_floor_libraries() -> None:
    """The floor is python-isal's gunzip (and zlib-ng is measured beside it) whatever the
    product uses, so the bench installs them when they are missing."""
    import importlib.util
    import subprocess
    import sys

    missing = [pkg for module, pkg in (("isal", "isal"), ("zlib_ng", "zlib-ng"), ("msgspec", "msgspec"))
               if importlib.util.find_spec(module) is None]
    if missing:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], check=True)

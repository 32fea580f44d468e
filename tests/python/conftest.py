import glob
import os
import subprocess

import pytest

MUST_WORK = os.environ.get("PYSANDBOX_MUST_WORK") == "1"


def skip_or_fail(reason):
    if MUST_WORK:
        pytest.fail("required by PYSANDBOX_MUST_WORK=1: " + reason)
    pytest.skip(reason)


def interpreters():
    """Real CPython binaries of distinct versions found on this machine: {version: path}."""
    found = {}
    candidates = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.*/bin/python3.*")))
    candidates += sorted(glob.glob("/usr/bin/python3.*"))
    for path in candidates:
        if path.endswith("-config") or not os.access(path, os.X_OK):
            continue
        try:
            v = subprocess.run(
                [path, "-I", "-S", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True, text=True, timeout=10,
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            continue
        if v and tuple(map(int, v.split("."))) >= (3, 8) and v not in found:
            found[v] = path
    return found

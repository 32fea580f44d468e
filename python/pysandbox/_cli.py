"""The ``pysandbox`` command of an installed package: the binary shipped inside it, run in this
process's place (``exec``), so that its exit status, signals and terminal are the command's."""

from __future__ import annotations

import os
import sys


def main() -> None:
    # Not `helper_binary()`: its last resort is `pysandbox` on PATH, which is this script.
    binary = os.environ.get("PYSANDBOX_BIN") or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "_bin", "pysandbox"
    )
    try:
        os.execv(binary, ["pysandbox", *sys.argv[1:]])
    except OSError as e:
        sys.exit(f"pysandbox: cannot run {binary}: {e.strerror}; reinstall pysandbox (`pip install .`)")

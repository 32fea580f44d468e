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


def forged_result_code(payload_text):
    """Python source (an expression, for exec and eval alike) that forges the API result
    `payload_text` (tagged JSON, sent as is) and ends the run before the real one is sent.

    The one place that knows how a result leaves the sandbox (a Result frame on the report pipe,
    descriptor 4: docs/protocol.md), so that every forging test follows a change of protocol.
    Needs a configuration that allows `os` (preset="stdlib").
    """
    payload = payload_text.encode()
    body = b"\x02" + len(payload).to_bytes(4, "little") + payload
    data = len(body).to_bytes(4, "little") + body
    return (
        "(lambda os, f: (f.write(%r), f.flush(), os._exit(0)))"
        "(__import__('os'), __import__('os').fdopen(4, 'wb', closefd=False))" % (data,)
    )


class Server:
    """A `pysandbox server` started for a test on a free loopback port (the real binary of the
    installed package), stopped with SIGTERM at the end; `url` is its base address."""

    def __init__(self, *flags, env=None):
        import tempfile

        import pysandbox

        # The access log goes to a file: a pipe nobody drains would stop the server once full.
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [pysandbox.helper_binary(), "server", "--listen", "127.0.0.1:0", *flags],
            stdout=subprocess.PIPE, stderr=self.log, text=True,
            env=dict(os.environ, **(env or {})),
        )  # fmt: skip
        line = self.proc.stdout.readline()
        if "listening on " not in line:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError("the server did not start: " + line + self.log_text())
        self.url = line.split("listening on ", 1)[1].strip()

    def log_text(self):
        """What the server logged so far."""
        self.log.seek(0)
        return self.log.read()

    def stop(self, timeout=30):
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.log.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def server():
    """A server with the "full" preset (numpy, pandas, matplotlib importable), 2 workers."""
    s = Server("--preset", "full", "--workers", "2", "--timeout", "10s")
    yield s
    s.stop()

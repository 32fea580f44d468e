"""The package, cold, warm and sessions, used by an unprivileged user (uid 65534): every path
works, with the same isolation. Run as root, the test copies the installed package where that
user can read it and drives it with Debian's interpreter (pyenv's lives under /root, mode 0700).
"""

import json
import os
import shutil
import subprocess
import tempfile

import pytest

import pysandbox
from conftest import skip_or_fail

PY = "/usr/bin/python3.11"

SCRIPT = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
from pysandbox import Sandbox, SandboxConfig, SandboxError
secret_path = sys.argv[2]
cfg = SandboxConfig(preset="stdlib", python=%(py)r, timeout=5)
out = {"uid": os.getuid(), "host_can_read": open(secret_path).read() != ""}
with Sandbox(cfg) as cold:
    out["cold"] = cold.eval("1 + 1")
with Sandbox(cfg, pool=True, workers=1) as warm:
    out["warm"] = [warm.eval("n * 2", locals={"n": i}) for i in range(3)]
    try:
        out["warm_read"] = warm.eval("open(%%r).read()" %% secret_path)
    except SandboxError as e:
        out["warm_read"] = type(e).__name__
    out["warm_ids"] = warm.eval("(__import__('os').getuid(), __import__('os').getpid())")
s = Sandbox(cfg).session()
s.execute("x = 41")
out["session"] = s.execute("print(x + 1)").stdout
try:
    out["session_read"] = s.execute("print(open(%%r).read())" %% secret_path).stdout
except SandboxError as e:
    out["session_read"] = type(e).__name__
s.close()
print(json.dumps(out))
""" % {"py": PY}


def test_every_path_works_for_an_unprivileged_user():
    if os.geteuid() != 0:
        pytest.skip("already unprivileged: the whole suite runs as this user")
    setpriv = shutil.which("setpriv")
    if setpriv is None or not os.access(PY, os.X_OK):
        skip_or_fail("setpriv and /usr/bin/python3.11 are needed to run as an unprivileged user")
    top = tempfile.mkdtemp(prefix="pysandbox-unpriv-")
    try:
        os.chmod(top, 0o755)
        site = os.path.join(top, "site")
        shutil.copytree(os.path.dirname(pysandbox.__file__), os.path.join(site, "pysandbox"))
        # A file the user may read on the host, outside anything the sandbox is given.
        secret = "unprivileged-secret-" + os.urandom(6).hex()
        secret_path = os.path.join(top, "secret")
        with open(secret_path, "w") as f:
            f.write(secret)
        script = os.path.join(top, "drive.py")
        with open(script, "w") as f:
            f.write(SCRIPT)
        for root, dirs, files in os.walk(top):
            for name in dirs + files:
                path = os.path.join(root, name)
                os.chmod(path, 0o755 if os.path.isdir(path) or os.access(path, os.X_OK) else 0o644)
        run = subprocess.run(
            [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--reset-env",
             PY, script, site, secret_path],
            capture_output=True, text=True, timeout=120, cwd=top,
        )
        assert run.returncode == 0, run.stderr
        assert secret not in run.stdout + run.stderr
        out = json.loads(run.stdout)
        assert out["uid"] == 65534 and out["host_can_read"]
        assert out["cold"] == 2
        assert out["warm"] == [0, 2, 4]
        assert out["warm_read"] == "SandboxedException", out
        # uid 0 of the worker's user namespace, without capabilities; PID 1 of its own namespace.
        assert out["warm_ids"] == (0, 1) or out["warm_ids"] == [0, 1], out
        assert out["session"] == "42\n"
        assert out["session_read"] == "SandboxedException", out
    finally:
        shutil.rmtree(top, ignore_errors=True)

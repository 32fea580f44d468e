"""Installing: `pip install .` from a clean copy of the checkout builds and ships everything (the
native module, the `pysandbox` binary and its zygote library, the `pysandbox` command), and
`pip wheel .` makes a manylinux abi3 wheel that installs and works in a fresh venv whose PATH
has no Rust.

The copy holds what git would check out (tracked and untracked-but-not-ignored files of the
working tree, so no stray `python/pysandbox/_bin/`). Cargo's target directory for it is
`target/install-test/target`, kept between runs: the first build is from scratch (about 3 minutes
of CPU; 4m50s on two busy cores), later ones reuse what did not change (about 25 s in all). pip fetches the build
requirements (maturin) from the index, as it does for any user.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile

import pytest

from conftest import skip_or_fail

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORK = os.path.join(ROOT, "target", "install-test")
SRC = os.path.join(WORK, "src")

pytestmark = pytest.mark.timeout(900)


def clean_env(**extra):
    """The environment without anything that points pysandbox or Python elsewhere."""
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("PYSANDBOX_", "PYTHON", "VIRTUAL_ENV", "PIP_", "MATURIN_"))
    }  # fmt: skip
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env.update(extra)
    return env


def run(cmd, env, cwd=None, timeout=900):
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, "%s failed (%d):\n%s\n%s" % (
        " ".join(cmd), proc.returncode, proc.stdout[-4000:], proc.stderr[-6000:]
    )
    return proc


def copy_checkout(dest):
    """What a clean checkout of the working tree holds, copied to `dest` (times kept, so that
    cargo rebuilds only what changed since the last run)."""
    git = shutil.which("git")
    if git is None or not os.path.isdir(os.path.join(ROOT, ".git")) and not os.path.isfile(
        os.path.join(ROOT, ".git")
    ):
        skip_or_fail("copying the checkout needs git and a git checkout")
    listed = subprocess.run(
        [git, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    shutil.rmtree(dest, ignore_errors=True)
    for rel in filter(None, listed):
        src = os.path.join(ROOT, rel)
        if not os.path.lexists(src):  # deleted in the working tree, not yet in the index
            continue
        os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
        shutil.copy2(src, os.path.join(dest, rel), follow_symlinks=False)


def venv(path):
    """A fresh venv of this interpreter (with pip), with nothing else installed."""
    subprocess.run([sys.executable, "-m", "venv", path], check=True, timeout=120)
    return os.path.join(path, "bin")


def without_rust(path):
    """`path` (a PATH value) without the directories that hold cargo or rustc."""
    keep = [
        d for d in path.split(os.pathsep)
        if d and not any(os.path.exists(os.path.join(d, t)) for t in ("cargo", "rustc"))
    ]  # fmt: skip
    return os.pathsep.join(keep)


# Run by each venv's interpreter: the package's API, from a directory without the sources.
PROBE = textwrap.dedent("""
    import json, os, sys
    import pysandbox
    from pysandbox import Sandbox, SandboxConfig, SandboxedException
    out = {"binary": pysandbox.helper_binary()}
    s = Sandbox(SandboxConfig("math"))
    out["execute"] = s.execute("import math\\nprint(math.factorial(10))").stdout
    out["eval"] = s.eval("sum(x * x for x in range(10))")
    try:
        s.execute("open('/etc/hostname').read()")
        out["isolated"] = False
    except SandboxedException as e:
        out["isolated"] = e.type_name
    s.close()
    # The warm pool: the zygote library is found next to the shipped binary.
    with Sandbox(SandboxConfig("math"), pool=True, workers=1) as warm:
        out["warm"] = warm.eval("6 * 7")
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Build from a clean copy: `pip install <copy>` into one venv (with cargo on PATH), then
    `pip wheel <copy>`. Returns (that venv's bin directory, the wheel's path)."""
    if shutil.which("cargo") is None:
        skip_or_fail("building the package needs cargo on PATH")
    copy_checkout(SRC)
    assert not os.path.exists(os.path.join(SRC, "python", "pysandbox", "_bin"))
    env = clean_env(CARGO_TARGET_DIR=os.path.join(WORK, "target"))
    bin_dir = venv(str(tmp_path_factory.mktemp("venv-build")))
    run([os.path.join(bin_dir, "python"), "-m", "pip", "install", "-q", SRC], env=env)
    dist = str(tmp_path_factory.mktemp("dist"))
    run([os.path.join(bin_dir, "python"), "-m", "pip", "wheel", "-q", "--no-deps", "-w", dist,
         SRC], env=env)  # fmt: skip
    wheels = [f for f in os.listdir(dist) if f.endswith(".whl")]
    assert len(wheels) == 1, wheels
    return bin_dir, os.path.join(dist, wheels[0])


def check_installed(bin_dir, env, tmp_path):
    """The package and the command of the venv `bin_dir` work, with the venv's own binary."""
    prefix = os.path.dirname(bin_dir)
    probe = run([os.path.join(bin_dir, "python"), "-c", PROBE], env=env, cwd=str(tmp_path))
    out = json.loads(probe.stdout.strip().splitlines()[-1])
    assert out["binary"].startswith(prefix + os.sep), out["binary"]
    assert out["binary"].endswith(os.path.join("pysandbox", "_bin", "pysandbox"))
    assert out["execute"] == "3628800\n"
    assert out["eval"] == 285
    assert out["isolated"] == "PermissionError", out["isolated"]
    assert out["warm"] == 42

    command = shutil.which("pysandbox", path=env["PATH"])
    assert command == os.path.join(bin_dir, "pysandbox")
    r = run(["pysandbox", "run", "-c", "print(1+1)"], env=env, cwd=str(tmp_path))
    assert r.stdout == "2\n"
    # The command's exit status is the binary's: a failing program fails the command.
    bad = subprocess.run(["pysandbox", "run", "-c", "raise SystemExit(3)"], env=env,
                         cwd=str(tmp_path), capture_output=True, text=True, timeout=60)  # fmt: skip
    assert bad.returncode == 3, (bad.returncode, bad.stderr)
    # `pysandbox server` becomes the service's binary, shipped next to the command's.
    server = run(["pysandbox", "server", "--help"], env=env, cwd=str(tmp_path))
    assert "Usage: pysandbox server [OPTIONS]" in server.stdout, server.stdout


def test_pip_install_from_a_clean_checkout(built, tmp_path):
    bin_dir, _ = built
    env = clean_env(PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""))
    check_installed(bin_dir, env, tmp_path)


def test_wheel_is_abi3_manylinux(built):
    _, wheel = built
    m = re.fullmatch(r"pysandbox-[^-]+-cp39-abi3-manylinux_(\d+)_(\d+)_x86_64\.whl",
                     os.path.basename(wheel))  # fmt: skip
    assert m, os.path.basename(wheel)
    tag = "manylinux_%s_%s_x86_64" % m.groups()
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        wheel_meta = next(n for n in names if n.endswith(".dist-info/WHEEL"))
        assert "Tag: cp39-abi3-%s" % tag in z.read(wheel_meta).decode().splitlines()
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "pysandbox=pysandbox._cli:main" in z.read(entry_points).decode().replace(" ", "")
        for shipped in ("pysandbox/_bin/pysandbox", "pysandbox/_bin/pysandbox-server",
                        "pysandbox/_bin/libpysandbox_zygote.so",
                        "pysandbox/_native.abi3.so"):  # fmt: skip
            assert shipped in names
            # Executable bits survive in the archive (pip restores them).
            assert z.getinfo(shipped).external_attr >> 16 & 0o111, shipped
    # auditwheel reads every ELF file in the wheel (the binary and the library too): external
    # libraries only from the manylinux allow-list, glibc symbols no newer than the tag.
    try:
        import auditwheel  # noqa: F401
    except ImportError:
        skip_or_fail("auditwheel is not installed (`make deps`)")
    show = subprocess.run([sys.executable, "-m", "auditwheel", "show", wheel],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert show.returncode == 0, show.stderr
    text = " ".join(show.stdout.split())
    assert 'is consistent with the following platform tag: "%s"' % tag in text, text


def test_wheel_works_in_a_venv_without_rust(built, tmp_path):
    _, wheel = built
    bin_dir = venv(str(tmp_path / "venv"))
    path = bin_dir + os.pathsep + without_rust(os.environ.get("PATH", "/usr/bin:/bin"))
    if not {"/usr/bin", "/bin"} & set(path.split(os.pathsep)):
        skip_or_fail("rustc or cargo is in /usr/bin: no PATH can leave them out and keep ldd")
    env = clean_env(PATH=path)
    for k in ("CARGO", "CARGO_HOME", "RUSTUP_HOME", "RUSTUP_TOOLCHAIN", "CARGO_TARGET_DIR"):
        env.pop(k, None)
    assert shutil.which("cargo", path=path) is None and shutil.which("rustc", path=path) is None
    run([os.path.join(bin_dir, "python"), "-m", "pip", "install", "-q", "--no-index",
         "--no-deps", wheel], env=env)  # fmt: skip
    check_installed(bin_dir, env, tmp_path)

"""pysandbox's PEP 517 build backend: maturin, after building the binaries the package runs.

maturin builds one crate, ``crates/py`` (the native module ``pysandbox._native``). The package
also needs the ``pysandbox`` binary (``crates/cli``: the helper process it starts, and the
command), the ``pysandbox-server`` binary (the same crate: the HTTP service, which
``pysandbox server`` becomes) and the library a warm worker's zygote loads (``crates/zygote``,
``libpysandbox_zygote.so``, which the binary looks for next to itself). A wheel is built in
three steps:

1. ``cargo build --release -p pysandbox-cli -p pysandbox-zygote`` in the workspace (its own
   target directory, or ``$CARGO_TARGET_DIR``: what ``make build`` built is reused);
2. the three are copied, stripped, into ``python/pysandbox/_bin/``, which ``[tool.maturin] include``
   puts in the wheel;
3. maturin builds the wheel, tagged ``manylinux_2_N``: N is the newest glibc symbol version
   that a binary or the library needs (an executable linked against glibc >= 2.34 needs
   ``__libc_start_main@GLIBC_2.34``). maturin's PEP 517 default is ``--compatibility off``, a
   ``linux_x86_64`` tag that no index or other machine accepts, and its own check looks at the
   extension module only. maturin still checks that the extension fits the tag.

Everything else (metadata, sdist, the hooks' requirements) is maturin's. Building from source
needs Rust (cargo) and a C linker; the wheel then installs anywhere without them.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
from typing import Any, Dict, List, Mapping, Optional, Tuple

import maturin
from maturin import (  # noqa: F401  (the hooks this backend leaves to maturin)
    build_sdist,
    get_requires_for_build_editable,
    get_requires_for_build_sdist,
    get_requires_for_build_wheel,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN_DIR = os.path.join(ROOT, "python", "pysandbox", "_bin")
BINARY = "pysandbox"
SERVER = "pysandbox-server"
LIBRARY = "libpysandbox_zygote.so"


def build_wheel(
    wheel_directory: str,
    config_settings: Optional[Mapping[str, Any]] = None,
    metadata_directory: Optional[str] = None,
) -> str:
    settings = _prepare(config_settings)
    return maturin.build_wheel(wheel_directory, settings, metadata_directory)


def build_editable(
    wheel_directory: str,
    config_settings: Optional[Mapping[str, Any]] = None,
    metadata_directory: Optional[str] = None,
) -> str:
    settings = _prepare(config_settings)
    return maturin.build_editable(wheel_directory, settings, metadata_directory)


def _prepare(config_settings: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """Build and place the binaries; maturin's settings with the wheel's platform tag."""
    built = _cargo_build()
    os.makedirs(BIN_DIR, exist_ok=True)
    placed = [_place(built[name], name) for name in (BINARY, SERVER, LIBRARY)]
    args = maturin.get_maturin_pep517_args(config_settings)
    if sys.platform.startswith("linux") and not any(
        a in ("--compatibility", "--manylinux") or a.startswith(("--compatibility=", "--manylinux="))
        for a in args
    ):
        major, minor = max(glibc_requirement(p) for p in placed)
        args = ["--compatibility", "manylinux_%d_%d" % (major, minor), *args]
    settings = {k: v for k, v in (config_settings or {}).items() if k != "build-args"}
    settings["maturin.build-args"] = shlex.join(args)
    return settings


def _cargo_build() -> Dict[str, str]:
    """Build the binaries and the library; their paths, from cargo's own report."""
    cargo = os.environ.get("CARGO") or shutil.which("cargo")
    if not cargo:
        raise SystemExit(
            "pysandbox: building from source needs Rust (cargo on PATH, https://rustup.rs); "
            "or install a built wheel (`pip wheel .` on a machine with Rust)"
        )
    command = [
        cargo, "build", "--release", "--manifest-path", os.path.join(ROOT, "Cargo.toml"),
        "-p", "pysandbox-cli", "-p", "pysandbox-zygote",
        "--message-format=json-render-diagnostics",
    ]  # fmt: skip
    print("Running `%s`" % " ".join(command), flush=True)
    # Diagnostics go to stderr as cargo renders them; stdout carries one JSON message a line.
    proc = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit("pysandbox: `cargo build` failed (exit status %d)" % proc.returncode)
    found: Dict[str, str] = {}
    for line in proc.stdout.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("reason") != "compiler-artifact":
            continue
        kinds = msg.get("target", {}).get("kind", [])
        if "bin" in kinds and msg.get("executable") and msg["target"]["name"] in (BINARY, SERVER):
            found[msg["target"]["name"]] = msg["executable"]
        elif "cdylib" in kinds:
            for f in msg.get("filenames", []):
                if os.path.basename(f) == LIBRARY:
                    found[LIBRARY] = f
    missing = {BINARY, SERVER, LIBRARY} - found.keys()
    if missing:
        raise SystemExit("pysandbox: cargo did not report building %s" % ", ".join(sorted(missing)))
    return found


def _place(source: str, name: str) -> str:
    """Copy `source` into the package's _bin/ as `name`, stripped of its symbol tables.

    Written beside and renamed over, so that a binary running from there (an editable
    install) is replaced, not rewritten in place ("text file busy")."""
    target = os.path.join(BIN_DIR, name)
    fd, tmp = tempfile.mkstemp(dir=BIN_DIR, prefix="." + name)
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        strip = shutil.which("strip")
        if strip:
            # Symbols only serve debuggers here (release builds carry no debug information):
            # stripping halves the binary. The dynamic symbols the loader needs stay.
            subprocess.run([strip, tmp], check=True)
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def glibc_requirement(path: str) -> Tuple[int, int]:
    """The newest ``GLIBC_x.y`` symbol version an ELF file needs (its ``.gnu.version_r``
    section, the versions the dynamic loader checks), at least (2, 17), manylinux2014's."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise SystemExit("pysandbox: %s is not a 64-bit little-endian ELF file" % path)
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections: List[Tuple[int, int, int, int]] = []  # (type, offset, size, link)
    for i in range(shnum):
        base = shoff + i * shentsize
        sh_type, = struct.unpack_from("<I", data, base + 4)
        sh_offset, sh_size = struct.unpack_from("<QQ", data, base + 0x18)
        sh_link, = struct.unpack_from("<I", data, base + 0x28)
        sections.append((sh_type, sh_offset, sh_size, sh_link))
    best = (2, 17)
    SHT_GNU_VERNEED = 0x6FFFFFFE
    for sh_type, offset, _size, link in sections:
        if sh_type != SHT_GNU_VERNEED:
            continue
        strtab = sections[link][1]

        def name(at: int) -> str:
            end = data.index(b"\0", strtab + at)
            return data[strtab + at:end].decode()

        need = offset
        while True:
            _ver, count, _file, aux, nxt = struct.unpack_from("<HHIII", data, need)
            at = need + aux
            for _ in range(count):
                _hash, _flags, _other, vname, anext = struct.unpack_from("<IHHII", data, at)
                v = name(vname)
                if v == "GLIBC_PRIVATE":
                    raise SystemExit("pysandbox: %s uses glibc's private symbols" % path)
                if v.startswith("GLIBC_"):
                    parts = tuple(int(p) for p in v[len("GLIBC_"):].split("."))
                    best = max(best, (parts[0], parts[1] if len(parts) > 1 else 0))
                at += anext
            if not nxt:
                break
            need += nxt
    return best


if __name__ == "__main__":
    # `python tools/pysandbox_build.py FILE...`: the glibc each needs (a check by hand).
    for p in sys.argv[1:]:
        print("%s: manylinux_%d_%d_%s" % (p, *glibc_requirement(p), platform.machine()))

"""The bootstrap's frames (crates/core/src/bootstrap), tested on the host: the layouts the
bootstrap writes and reads are the ones the Rust side encodes and decodes (docs/protocol.md; the
same bytes are checked in crates/core/src/protocol.rs)."""

import ast
import os
import re

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "crates", "core", "src", "bootstrap")

#: Report::Done { exit: 7, cpu_micros: 0, maxrss_kib: 0 }, as the Rust encoder writes it.
DONE_7 = b"\x15\x00\x00\x00\x03\x07\x00\x00\x00" + bytes(16)
#: Report::Limit(Limit::Memory).
LIMIT_MEMORY = b"\x0b\x00\x00\x00\x01\x06\x00\x00\x00memory"
#: Request { code: b"print(1)", name: "a.py", stdin: Some(b"in"), api: None, no files, nothing
#: to collect, not a cell, no arguments }.
REQUEST = (b"\x2a\x00\x00\x00\x01" + b"\x08\x00\x00\x00print(1)" + b"\x04\x00\x00\x00a.py"
           + b"\x01\x02\x00\x00\x00in" + b"\x00" + bytes(8) + b"\x00" + bytes(4))  # fmt: skip


@pytest.fixture(scope="module")
def boot():
    ns = {"__name__": "pysandbox_bootstrap"}
    for name in ("support.py", "warm.py"):
        with open(os.path.join(ROOT, name)) as f:
            exec(compile(f.read(), name, "exec"), ns)
    return ns


def test_report_frames_are_the_rust_layout(boot):
    frame, field = boot["_pysandbox_frame"], boot["_pysandbox_field"]
    assert frame(1, field(b"memory")) == LIMIT_MEMORY
    done = (7).to_bytes(4, "little", signed=True) + (0).to_bytes(8, "little") * 2
    assert frame(3, done) == DONE_7
    # The run fast path writes its memory Limit frame as a literal: the same bytes.
    with open(os.path.join(ROOT, "run.py")) as f:
        literal = re.search(r'posix\.write\(4, (b"[^"]*")\)', f.read()).group(1)
    assert ast.literal_eval(literal) == LIMIT_MEMORY


def test_frames_do_not_use_builtins_the_code_may_replace(boot, monkeypatch):
    import builtins

    monkeypatch.setattr(builtins, "len", lambda x: 0)
    assert boot["_pysandbox_frame"](1, boot["_pysandbox_field"](b"memory")) == LIMIT_MEMORY


def test_requests_are_read_whole_and_in_pieces(boot):
    r, w = os.pipe()
    try:
        os.write(w, REQUEST + boot["_warm_request_frame"](b"x = 1", b"{}"))
        pending = bytearray()
        first = boot["_warm_next"](r, pending)
        assert (first["code"], first["name"], first["stdin"], first["api"]) == (
            b"print(1)", b"a.py", b"in", None)  # fmt: skip
        assert (first["files"], first["collect"], first["cell"], first["live"]) == ([], [], False, False)
        second = boot["_warm_next"](r, pending)
        assert (second["code"], second["stdin"], second["api"]) == (b"x = 1", None, b"{}")
        assert not pending
    finally:
        os.close(r)
        os.close(w)

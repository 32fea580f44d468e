"""One outcome for every front end (docs/outcome.md): `run --json`, `batch` lines (warm and
session) and the package's Result, checked against the published JSON Schema."""

import json
import os
import subprocess

import pytest

import pysandbox
from pysandbox import Sandbox, SandboxConfig

jsonschema = pytest.importorskip("jsonschema")

DOCS = os.path.join(os.path.dirname(__file__), "..", "..", "docs")

CASES = [
    # (code, flags, status, limit, error type)
    ("print(1 + 1)", [], "ok", None, None),
    ("1 / 0", [], "error", None, "ZeroDivisionError"),
    ("import sys; sys.exit(3)", [], "error", None, None),
    ("while True: pass", ["--timeout", "1s"], "limit", "wall", None),
    ("import ctypes; ctypes.string_at(0)", [], "crashed", None, None),
    ("print('x' * 5000)", ["--max-output", "1K"], "ok", "output", None),
]


@pytest.fixture(scope="module")
def validator():
    with open(os.path.join(DOCS, "outcome.schema.json")) as f:
        schema = json.load(f)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def check(validator, outcome, status, limit, error_type, where):
    errors = [e.message for e in validator.iter_errors(outcome)]
    assert not errors, (where, errors, outcome)
    assert outcome["status"] == status, (where, outcome)
    assert outcome["limit"] == limit, (where, outcome)
    if error_type is None:
        assert outcome["error"] is None, (where, outcome)
    else:
        assert outcome["error"]["type"] == error_type, (where, outcome)
        if status != "sandbox_error":
            assert error_type in outcome["error"]["traceback"], (where, outcome)


def run(*args, stdin=None):
    return subprocess.run([pysandbox.helper_binary(), *args], input=stdin, capture_output=True,
                          text=True, timeout=60)  # fmt: skip


def test_cold_outcomes_follow_the_schema(validator):
    for code, flags, status, limit, error_type in CASES:
        p = run("run", "--json", "--preset", "stdlib", *flags, "-c", code)
        check(validator, json.loads(p.stdout), status, limit, error_type, ("cold", code))
    # A cell's rich results, from display() and the last value.
    code = "class P:\n    def _repr_png_(self):\n        return b'png'\ndisplay(P())\n6 * 7"
    p = run("run", "--json", "--cell", "-c", code)
    o = json.loads(p.stdout)
    check(validator, o, "ok", None, None, "cell")
    assert [r["is_main_result"] for r in o["results"]] == [False, True], o
    assert o["results"][0]["data"]["image/png"] == "cG5n", o
    # A refused request is an outcome too, with the error kind of the table.
    p = run("run", "--json", "--memory", "1x", "-c", "print(1)")
    assert p.returncode == 2
    o = json.loads(p.stdout)
    check(validator, o, "sandbox_error", None, "policy", "bad policy")


@pytest.mark.parametrize("session", [False, True])
def test_warm_and_session_outcomes_follow_the_schema(validator, session):
    for code, flags, status, limit, error_type in CASES:
        lines = [{"id": 1, "code": "x = 1"}, {"id": 2, "code": code}]
        if session:
            for line in lines:
                line["session"] = "s"
        p = run("batch", "--workers", "1", "--preset", "stdlib", *flags,
                stdin="".join(json.dumps(x) + "\n" for x in lines))  # fmt: skip
        answers = {a["id"]: a for a in map(json.loads, p.stdout.splitlines())}
        check(validator, answers[2], status, limit, error_type, (session, code))
    # A call to a session a limit ended: a sandbox error of kind "closed".
    lines = [{"id": i, "code": c, "session": "s"} for i, c in ((1, "while True: pass"), (2, "1"))]
    p = run("batch", "--workers", "1", "--timeout", "1s",
            stdin="".join(json.dumps(x) + "\n" for x in lines))  # fmt: skip
    answers = {a["id"]: a for a in map(json.loads, p.stdout.splitlines())}
    check(validator, answers[2], "sandbox_error", None, "closed", "ended session")


def test_the_package_result_carries_the_outcome():
    s = Sandbox(SandboxConfig(preset="stdlib", max_output=100))
    r = s.execute("print('y' * 500)")
    assert (r.status, r.limit, r.stdout_truncated) == ("ok", "output", True)
    r = s.execute("import sys; sys.exit(4)")
    assert (r.status, r.exit_code) == ("error", 4)
    with Sandbox(SandboxConfig(preset="stdlib"), pool=True, workers=1) as w:
        r = w.execute("print(1)")
        assert (r.status, r.limit, r.signal, r.results, r.files) == ("ok", None, None, [], {})


@pytest.mark.parametrize("mode", ["cold", "warm", "session"])
def test_files_in_and_out(mode):
    cfg = SandboxConfig(preset="stdlib")
    code = ("import csv\nrows = list(csv.reader(open('data.csv')))\n"
            "open('out/n.txt', 'w').write(str(len(rows)))\nopen('img.png', 'wb').write(b'\\x89PNG')")  # fmt: skip
    files = {"data.csv": "a,b\n1,2\n3,4\n", "out/keep": b""}
    if mode == "session":
        with Sandbox(cfg).session() as s:
            r = s.execute(code, files=files, collect=["*.png", "out/*.txt"])
            # The working directory is the session's: a later call sees the files.
            assert s.execute("print(open('out/n.txt').read())").stdout == "3\n"
    else:
        with Sandbox(cfg, pool=mode == "warm", workers=1) as s:
            r = s.execute(code, files=files, collect=["*.png", "out/*.txt"])
    assert r.files == {"img.png": b"\x89PNG", "out/n.txt": b"3"}, (mode, r)
    assert not r.files_truncated
    with pytest.raises(pysandbox.PolicyError, match="'..' component"):
        Sandbox(cfg).execute("1", files={"../x": b""})
    with pytest.raises(TypeError, match="bytes or str"):
        Sandbox(cfg).execute("1", files={"x": 3})
    with pytest.raises(pysandbox.PolicyError, match="unknown mode 'notebook'"):
        Sandbox(cfg).execute("1", mode="notebook")
    with pytest.raises(pysandbox.PolicyError, match="at most 100"):
        Sandbox(cfg).execute("1", files={"f%d" % i: b"" for i in range(101)})

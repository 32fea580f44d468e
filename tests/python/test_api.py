"""The Python package, through the installed package and the real sandbox."""

import asyncio
import copy
import doctest
import os
import shutil
import socket
import tempfile
import threading
import time

import pytest

import pysandbox
from pysandbox import (
    MalformedResult,
    MemoryLimitExceeded,
    OutputLimitExceeded,
    PolicyError,
    ProcessLimitExceeded,
    Sandbox,
    SandboxConfig,
    SandboxCrashed,
    SandboxedException,
    SandboxError,
    Timeout,
)

from conftest import forged_result_code, interpreters, skip_or_fail, MUST_WORK


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(SandboxConfig("math", "stdout")) as s:
        yield s


@pytest.fixture(scope="module")
def stdlib():
    with Sandbox(SandboxConfig(preset="stdlib", timeout=5)) as s:
        yield s


def test_issue_example(sandbox):
    r = sandbox.execute("print(sum(data))", locals={"data": [1, 2, 3]})
    assert r.stdout == "6\n"
    assert r.cpu_time > 0 and r.wall_time > 0 and r.peak_memory > 0
    assert not r.stdout_truncated and not r.stderr_truncated
    assert sandbox.eval("2 ** 10") == 1024


def add(a, b):
    return a + b


def test_call_module_level_and_nested_functions(sandbox):
    assert sandbox.call(add, 1, 2) == 3

    def nested(items, scale=1):
        total = 0
        for x in items:
            total += x * scale
        return {"total": total, "kind": type(total).__name__}

    assert sandbox.call(nested, [1, 2, 3], scale=10) == {"total": 60, "kind": "int"}
    with pytest.raises(TypeError, match="def"):
        sandbox.call(lambda: 1)


def test_pysandbox_spellings():
    config = SandboxConfig()
    config.enable("datetime")
    config.allowModule("math", "sqrt")
    config.allow_module("json")
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("hello from the host")
    os.chmod(f.name, 0o644)  # run as root, the sandbox's user is nobody
    try:
        config.allowPath(f.name)
        s = Sandbox(config)
        assert s.eval("__import__('math').sqrt(16)") == 4.0
        assert s.eval(f"open({f.name!r}).read()") == "hello from the host"
        assert s.eval("__import__('datetime').date(2024, 1, 2).isoformat()") == "2024-01-02"
        with pytest.raises(SandboxedException, match="no attribute 'pi'"):
            s.eval("__import__('math').pi")
        s.close()
    finally:
        os.unlink(f.name)


def test_config_errors():
    with pytest.raises(TypeError, match="unexpected keywords: colour"):
        SandboxConfig(colour="blue")
    with pytest.raises(ValueError, match="Unknown feature: sockets"):
        SandboxConfig("sockets")
    with pytest.raises(PolicyError):
        SandboxConfig().enable("nope")
    # Invalid values are refused by the policy before anything runs.
    with pytest.raises(PolicyError, match="recursion_limit"):
        Sandbox(SandboxConfig(recursion_limit=1)).eval("1")
    with pytest.raises(PolicyError, match="does not exist"):
        c = SandboxConfig()
        c.allow_path("/no/such/path/for/pysandbox")
        Sandbox(c).eval("1")
    with pytest.raises(PolicyError, match="memory"):
        Sandbox(SandboxConfig(max_memory="lots")).eval("1")


def test_timeout():
    s = Sandbox(SandboxConfig(timeout=0.5))
    start = time.monotonic()
    with pytest.raises(Timeout) as e:
        s.execute("while True: pass")
    assert 0.5 <= time.monotonic() - start < 3
    assert "timeout" in str(e.value) and e.value.limit == "wall"
    # A C-level computation that never returns to the interpreter is stopped too.
    with pytest.raises(Timeout):
        s.execute("x = 10**10**8")
    s.close()


def test_memory_limit():
    s = Sandbox(SandboxConfig(max_memory=100))
    with pytest.raises(MemoryLimitExceeded, match="max_memory"):
        s.execute("x = bytearray(1 << 30)")
    s.close()


def test_process_limit():
    s = Sandbox(SandboxConfig(preset="stdlib", processes=1))
    with pytest.raises(ProcessLimitExceeded, match="processes"):
        s.execute("import threading\nt = threading.Thread(target=print)\nt.start()")
    s.close()


def test_output_limit():
    s = Sandbox(SandboxConfig(max_result=1000))
    with pytest.raises(OutputLimitExceeded, match="max_result"):
        s.eval("'x' * 5000")
    # Printed output is bounded and flagged, not an error.
    s = Sandbox(SandboxConfig(max_output=100))
    r = s.execute("print('y' * 10000)")
    assert r.stdout_truncated and len(r.stdout) == 100
    s.close()


def test_crash_is_reported(stdlib):
    with pytest.raises(SandboxCrashed, match="SIGSEGV") as e:
        stdlib.execute("import ctypes; ctypes.string_at(0)")
    assert e.value.signal == 11
    with pytest.raises(SandboxCrashed, match="SIGSYS"):
        stdlib.execute("import ctypes; ctypes.CDLL(None).syscall(101, 0, 0, 0, 0)")


def test_sandboxed_exception_has_the_users_traceback(sandbox):
    code = "def divide(a, b):\n    return a / b\n\nresult = divide(1, 0)\n"
    with pytest.raises(SandboxedException) as e:
        sandbox.execute(code)
    exc = e.value
    assert exc.type_name == "ZeroDivisionError"
    assert exc.message == "division by zero"
    assert 'line 4, in <module>' in exc.traceback
    assert "result = divide(1, 0)" in exc.traceback
    assert 'line 2, in divide' in exc.traceback and "return a / b" in exc.traceback
    assert "_pysandbox" not in exc.traceback
    assert "ZeroDivisionError: division by zero" in str(exc)
    assert isinstance(exc, SandboxError)


@pytest.mark.parametrize(
    "value",
    [
        None, True, False, 0, -1, 2**200, -(3**150), 1.5, float("inf"), -0.0, "",
        "héllo wörld ✓ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "\ud800 lone surrogate", b"", b"\x00\xff bytes",
        [1, [2, [3, []]]], (1, (2, "t")), [(1, 2), [3, 4]], {1, 2, 3}, frozenset({"a"}),
        {"a": {"b": [1, {"c": (2, 3)}]}, 1: "int key", (1, 2): "tuple key", None: b"x"},
        {frozenset({1}): {2.5: None}},
    ],
)  # fmt: skip
def test_data_round_trips(sandbox, value):
    out = sandbox.eval("value", locals={"value": value})
    assert out == value or (value != value and out != out)
    assert type(out) is type(value)
    # Nested types are kept too: tuples stay tuples, lists stay lists.
    assert repr(out) == repr(value)


def test_nan_round_trips(sandbox):
    out = sandbox.eval("x", locals={"x": float("nan")})
    assert out != out


def test_non_data_is_refused_with_its_path(sandbox):
    s = socket.socket()
    try:
        with pytest.raises(TypeError, match=r"locals\['data'\]\[2\]: cannot pass a socket"):
            sandbox.execute("pass", locals={"data": [1, 2, s]})
    finally:
        s.close()
    with pytest.raises(TypeError, match=r"globals\['f'\]: cannot pass a function"):
        sandbox.execute("pass", globals={"f": add})
    with pytest.raises(TypeError, match=r"args\[0\]: cannot pass a object"):
        sandbox.call(add, object(), 1)
    # Out of the sandbox: values that are not data are an error, never unpickled.
    with pytest.raises(SandboxedException, match="cannot pass a function out"):
        sandbox.eval("lambda: 1")


def key_bits(d):
    return [k.bit_length() for k in d]


def test_paths_are_written_out_only_for_errors(sandbox):
    # A dict key's repr was copied into the path of every value under it: 100k items under a
    # big key took 2.9 s to encode instead of 0.2.
    start = time.monotonic()
    pysandbox._native.encode({tuple(range(100_000)): list(range(100_000))})
    assert time.monotonic() - start < 1.0
    # An int key too long for repr() (4300 digits) goes in; in an error's path it is named.
    big = 10**5000
    assert sandbox.call(key_bits, {big: [1]}) == [big.bit_length()]
    with pytest.raises(TypeError, match=r"locals\['x'\]\[<int>\]\[1\]: cannot pass a object"):
        sandbox.execute("pass", locals={"x": {big: [1, object()]}})
    with pytest.raises(TypeError, match=r"globals\['k'\] key \(1, <object object at \w+>\)\[1\]: cannot"):
        sandbox.execute("pass", globals={"k": {(1, object()): 2}})


def test_callers_objects_are_unchanged(stdlib):
    data = {"list": [1, 2, 3], "nested": {"k": [1, {"deep": "x"}]}}
    g = {"shared": ["a"]}
    before = copy.deepcopy((data, g))
    hostile = """
data["list"].append(666)
data["nested"]["k"][1]["deep"] = "changed"
data.clear()
shared.append("evil")
import builtins
builtins.len = lambda x: 0
"""
    r = stdlib.execute(hostile, globals=g, locals={"data": data})
    assert (data, g) == before
    assert r.locals["data"] == {}
    assert r.globals["shared"] == ["a", "evil"]
    # The next run is untouched by the monkey-patching.
    assert stdlib.eval("len([1, 2])") == 2


def test_execute_globals_and_locals_semantics(sandbox):
    r = sandbox.execute("x = 1\ny = x + base", globals={"base": 10})
    assert r.globals["x"] == 1 and r.globals["y"] == 11 and r.locals is None
    r = sandbox.execute("z = base * 2", globals={"base": 4}, locals={"other": 1})
    assert r.locals == {"other": 1, "z": 8}
    assert "z" not in r.globals
    # Modules, functions and classes stay inside; data comes out.
    r = sandbox.execute("import math\ndef f(): pass\nclass C: pass\nn = math.floor(2.5)")
    assert r.globals == {"n": 2}


def test_recursion_limit():
    s = Sandbox(SandboxConfig(recursion_limit=50))
    code = "def fact(n):\n    return 1 if n <= 1 else n * fact(n - 1)\n"
    r = s.execute(code + "x = fact(40)")
    assert r.globals["x"] > 0
    with pytest.raises(SandboxedException, match="RecursionError"):
        s.execute(code + "x = fact(51)")
    s.close()


def test_import_whitelist(sandbox):
    with pytest.raises(SandboxedException, match="import of 'os' is not allowed"):
        sandbox.execute("import os")
    assert sandbox.eval("__import__('math').floor(2.5)") == 2


def test_stdin_needs_the_feature():
    s = Sandbox(SandboxConfig())
    with pytest.raises(SandboxedException, match="input\\(\\) blocked"):
        s.execute("input()", stdin="typed\n")
    s = Sandbox(SandboxConfig("stdin"))
    assert s.execute("print(input().upper())", stdin="typed\n").stdout == "TYPED\n"


def test_guard_bypass_still_cannot_reach_the_host():
    secret = "HOST-SECRET-" + os.urandom(6).hex()
    with tempfile.NamedTemporaryFile("w", delete=False) as f:
        f.write(secret)
    try:
        s = Sandbox(SandboxConfig("random"))
        r = s.execute(
            "imp = __import__('random').__builtins__['__import__']\n"
            "os = imp('os')\n"
            "try:\n    print(open(%r).read())\nexcept Exception as e:\n    print('denied', e)\n"
            "try:\n    print(os.read(os.open(%r, os.O_RDONLY), 100))\nexcept OSError as e:\n    print('denied', e)\n"
            % (f.name, f.name)
        )
        assert "denied" in r.stdout and secret not in r.stdout + r.stderr
    finally:
        os.unlink(f.name)


def test_concurrent_threads(sandbox):
    results = {}
    errors = []

    def work(i):
        try:
            results[i] = sandbox.eval("n * n", locals={"n": i})
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert results == {i: i * i for i in range(20)}


def test_concurrent_asyncio(sandbox):
    async def main():
        return await asyncio.gather(*(sandbox.aeval("n + 1", locals={"n": i}) for i in range(20)))

    assert asyncio.run(main()) == list(range(1, 21))

    async def other():
        r = await sandbox.aexecute("print('hi')")
        v = await sandbox.acall(add, 2, 3)
        return r.stdout, v

    assert asyncio.run(other()) == ("hi\n", 5)


def test_other_interpreter_versions():
    found = interpreters()
    pyenv = os.path.isdir(os.path.expanduser("~/.pyenv/versions"))
    if len(found) < 2:
        if MUST_WORK and pyenv:
            pytest.fail(f"need two Python versions, found {found}")
        pytest.skip(f"need two Python versions, found {found}")
    for version, path in sorted(found.items()):
        s = Sandbox(SandboxConfig(preset="stdlib", python=path))
        assert s.eval("__import__('sys').version_info[:2]") == tuple(map(int, version.split(".")))
        with pytest.raises(SandboxedException) as e:
            s.execute("def f():\n    return 1 / 0\nf()")
        assert "return 1 / 0" in e.value.traceback, (version, e.value.traceback)
        assert s.call(add, [1], [2]) == [1, 2]
        s.close()


def test_docstring_examples_run():
    for module in (pysandbox, pysandbox._config, pysandbox._sandbox):
        failures, tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert tried > 0 or module is pysandbox._errors
        assert failures == 0, module.__name__


def test_typing_files_are_shipped():
    here = os.path.dirname(pysandbox.__file__)
    assert os.path.exists(os.path.join(here, "py.typed"))
    assert os.path.exists(os.path.join(here, "_native.pyi"))


# Warm mode ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def warm():
    with Sandbox(SandboxConfig("math", preset="stdlib", timeout=2), pool=True) as s:
        yield s


def test_warm_pool_has_the_same_api(warm):
    r = warm.execute("print(sum(data))", locals={"data": [1, 2, 3]})
    assert r.stdout == "6\n" and r.locals == {"data": [1, 2, 3]}
    assert warm.eval("2 ** 100") == 2**100
    assert warm.call(add, [1], [2]) == [1, 2]
    with pytest.raises(SandboxedException) as e:
        warm.execute("def f():\n    return 1 / 0\nf()")
    assert "return 1 / 0" in e.value.traceback
    with pytest.raises(Timeout):
        warm.execute("while True: pass")
    assert warm.eval("1 + 1") == 2


def test_warm_results_are_checked_like_cold_ones():
    with Sandbox(SandboxConfig(preset="stdlib", max_result=1000), pool=True, workers=1) as s:
        with pytest.raises(OutputLimitExceeded, match="max_result"):
            s.eval("'x' * 5000")
        with pytest.raises(TypeError, match=r"globals\['sock'\]: cannot pass"):
            s.execute("pass", globals={"sock": object()})
        # A result forged by the code (then no real one): refused as data, nothing evaluated.
        forge = forged_result_code('{"x": 1}')
        with pytest.raises(MalformedResult, match="malformed data: not pysandbox data: unknown tag 'x'"):
            s.eval(forge)
        assert s.execute("import sys; sys.exit(3)").exit_code == 3
        assert s.eval("[1, (2, b'3')]") == [1, (2, b"3")]


def test_warm_requests_do_not_share_state(warm):
    warm.execute("import json\njson.X = 1\nopen('/tmp/f', 'w').write('x')\nG = 1")
    assert warm.eval("(hasattr(__import__('json'), 'X'), __import__('os').path.exists('/tmp/f'))") == (False, False)


def test_warm_concurrent(warm):
    async def main():
        return await asyncio.gather(*(warm.aeval("n * 3", locals={"n": i}) for i in range(20)))

    assert asyncio.run(main()) == [i * 3 for i in range(20)]


def test_session_keeps_state_and_ends_on_a_limit():
    s = Sandbox(SandboxConfig(preset="stdlib", timeout=1)).session()
    assert s.execute("x = 20").stdout == ""
    assert s.execute("x += 1\nprint(x * 2)").stdout == "42\n"
    with pytest.raises(SandboxedException, match="ZeroDivisionError"):
        s.execute("1/0")
    assert s.execute("print(x)").stdout == "21\n"
    with pytest.raises(Timeout):
        s.execute("while True: pass")
    with pytest.raises(SandboxError, match="session has ended"):
        s.execute("print(x)")
    s.close()


def test_session_ends_after_its_idle_timeout():
    s = Sandbox(SandboxConfig(preset="stdlib")).session(idle_timeout=0.3)
    s.execute("x = 1")
    time.sleep(0.8)
    with pytest.raises(SandboxError, match="session has ended: idle timeout"):
        s.execute("print(x)")
    with pytest.raises(SandboxError, match="^the session has ended: idle timeout$"):
        s.execute("print(x)")


def test_warm_policy_errors_are_policy_errors():
    with pytest.raises(PolicyError):
        Sandbox(SandboxConfig(recursion_limit=1), pool=True).eval("1")


def test_session_lifetime_and_nothing_runs_between_calls(tmp_path_factory):
    # Host-side evidence: a thread the first call left writes to a host file; between calls the
    # file does not grow (the session is stopped), and the session ends at its lifetime.
    shared = "/var/tmp/pysandbox-session-" + os.urandom(4).hex()
    os.makedirs(shared)
    os.chmod(shared, 0o777)
    try:
        ticks = os.path.join(shared, "ticks")
        cfg = SandboxConfig(preset="stdlib", processes=4, allow_write=[shared])
        s = Sandbox(cfg).session(lifetime=2.0)
        s.execute(
            "import threading, time\n"
            "def tick():\n"
            "    with open(%r, 'a') as f:\n"
            "        while True:\n"
            "            f.write('.'); f.flush(); time.sleep(0.01)\n"
            "threading.Thread(target=tick, daemon=True).start()\n"
            "time.sleep(0.2)\n" % ticks
        )
        after = os.path.getsize(ticks)
        assert after > 5
        time.sleep(0.6)
        assert os.path.getsize(ticks) <= after + 1
        time.sleep(1.6)
        with pytest.raises(SandboxError, match="session has ended: lifetime"):
            s.execute("print(1)")
    finally:
        shutil.rmtree(shared, ignore_errors=True)


# How a run ends through the package's API (crates/cli/tests/ending.rs runs the same on the
# command line's paths): the status and message of SystemExit are the interpreter's (the host
# interpreter is the control), and a fresh run (cold or warm) ends with its threads joined, its
# atexit functions run and its globals released, as the interpreter's exit does.
END = """
import atexit, threading, time
class A:
    def __del__(self): print("del A")
a = A()
atexit.register(print, "atexit ran")
def late(): time.sleep(0.2); print("thread done")
threading.Thread(target=late).start()
print("end of code")
"""


def _api_runner(mode):
    cfg = SandboxConfig(preset="stdlib", timeout=5)
    if mode == "cold":
        return Sandbox(cfg)
    if mode == "warm":
        return Sandbox(cfg, pool=True, workers=1)
    return Sandbox(cfg).session()


@pytest.mark.parametrize("mode", ["cold", "warm", "session"])
def test_the_api_ends_a_run_as_the_interpreter_does(mode):
    import subprocess
    import sys

    with _api_runner(mode) as s:
        for exit in ("sys.exit(3)", "sys.exit(300)", "sys.exit(-1)", "sys.exit('bye: a message')"):
            code = "import sys\n" + exit
            host = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            r = s.execute(code)
            assert (r.exit_code, r.stderr) == (host.returncode, host.stderr), (mode, exit, r)
        # Code that writes on stderr and exits raised nothing (a session once took the last
        # line of stderr for an exception).
        r = s.execute("import sys\nprint('ValueError: not raised', file=sys.stderr)\nsys.exit(2)")
        assert (r.exit_code, r.stderr) == (2, "ValueError: not raised\n"), (mode, r)
        if mode != "session":
            # A session's call is not the end of its interpreter.
            r = s.execute(END)
            assert r.stdout == "end of code\nthread done\natexit ran\ndel A\n", (mode, r)

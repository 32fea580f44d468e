"""The SandboxFusion and Piston compatible routes of `pysandbox server`, driven by the real,
unmodified PyPI clients (`sandbox-fusion`; `aiopyston`, whose module is `pyston`) against a
server started on loopback (conftest's `server`: --preset full, 2 workers, a 10 s ceiling)."""

import asyncio
import base64
import time
import warnings

import pytest

from conftest import Server, skip_or_fail


def _fusion():
    try:
        import sandbox_fusion
    except ImportError:
        skip_or_fail("the sandbox-fusion client is not installed (make deps)")
    return sandbox_fusion


def _requests():
    try:
        import requests
    except ImportError:
        skip_or_fail("requests is not installed (make deps)")
    return requests


@pytest.fixture
def fusion(server):
    sf = _fusion()
    sf.set_endpoint(server.url)
    return sf


def run(sf, **fields):
    return sf.run_code(sf.RunCodeRequest(language="python", **fields), max_attempts=1)


# --- SandboxFusion: /run_code -------------------------------------------------------------


def test_fusion_ping(server):
    r = _requests().get(server.url + "/v1/ping", timeout=10)
    assert r.status_code == 200 and r.json() == "pong"


def test_fusion_hello_stdout_is_byte_for_byte(fusion):
    res = run(fusion, code='print("hello")\nprint("  two  ", end="")')
    assert res.status == fusion.RunStatus.Success
    assert res.compile_result is None
    assert res.run_result.status == fusion.CommandRunStatus.Finished
    assert res.run_result.return_code == 0
    assert res.run_result.stdout == "hello\n  two  "
    assert res.run_result.stderr == ""
    assert res.message == ""


def test_fusion_language_may_be_left_out(server, fusion):
    # veRL's tutorial posts without `language`: python is meant.
    r = _requests().post(server.url + "/run_code", json={"code": "print(6 * 7)"}, timeout=30)
    res = fusion.RunCodeResponse(**r.json())
    assert r.status_code == 200 and res.status == fusion.RunStatus.Success
    assert res.run_result.stdout == "42\n"


def test_fusion_stdin(fusion):
    res = run(fusion, code="import sys\nprint(sys.stdin.read().upper(), end='')", stdin="ab\ncd\n")
    assert res.status == fusion.RunStatus.Success
    assert res.run_result.stdout == "AB\nCD\n"


def test_fusion_failing_program(fusion):
    res = run(fusion, code="print('before')\n1 / 0\n")
    assert res.status == fusion.RunStatus.Failed
    assert res.run_result.status == fusion.CommandRunStatus.Finished
    assert res.run_result.return_code == 1
    assert res.run_result.stdout == "before\n"
    assert "Traceback (most recent call last)" in res.run_result.stderr
    assert "ZeroDivisionError: division by zero" in res.run_result.stderr
    assert fusion.summary_run_code_result(res, fusion.SummaryMapping(RunFailed="rf")) == "rf"


def test_fusion_exit_status(fusion):
    res = run(fusion, code="import sys; sys.exit(3)")
    assert res.status == fusion.RunStatus.Failed
    assert res.run_result.return_code == 3


def test_fusion_timeout_answered_near_run_timeout(fusion):
    start = time.monotonic()
    res = run(fusion, code="print('started', flush=True)\nwhile True: pass", run_timeout=1.0)
    took = time.monotonic() - start
    assert res.status == fusion.RunStatus.Failed
    assert res.run_result.status == fusion.CommandRunStatus.TimeLimitExceeded
    assert res.run_result.return_code is None
    assert res.run_result.stdout == "started\n"
    assert 0.9 <= res.run_result.execution_time < 2.0
    assert took < 3.0, took
    assert fusion.summary_run_code_result(res, fusion.SummaryMapping(RunTimeout="to")) == "to"
    # The same program with more time is still running after 1 s: the limit is the request's.
    res = run(fusion, code="import time\ntime.sleep(1.5)\nprint('done')", run_timeout=3.0)
    assert res.status == fusion.RunStatus.Success and res.run_result.stdout == "done\n"


def test_fusion_files_in_and_fetch_files_out(fusion):
    blob = bytes(range(256))
    code = (
        "import os\n"
        "data = open('in/data.bin', 'rb').read()\n"
        "print(len(data), open('notes.txt').read())\n"
        "os.makedirs('out', exist_ok=True)\n"
        "open('out/rev.bin', 'wb').write(data[::-1])\n"
        "open('top.txt', 'w').write('top')\n"
    )
    res = run(
        fusion,
        code=code,
        files={
            "in/data.bin": base64.b64encode(blob).decode(),
            "notes.txt": base64.b64encode(b"hello notes").decode(),
        },
        fetch_files=["out/rev.bin", "./top.txt", "missing.txt"],
    )
    assert res.status == fusion.RunStatus.Success, res
    assert res.run_result.stdout == "256 hello notes\n"
    assert set(res.files) == {"out/rev.bin", "./top.txt"}
    assert base64.b64decode(res.files["out/rev.bin"]) == blob[::-1]
    assert base64.b64decode(res.files["./top.txt"]) == b"top"


def test_fusion_memory_limit_mb(server, fusion):
    # The PyPI client's RunCodeRequest has no memory_limit_MB (the server's has): posted as is.
    requests = _requests()
    code = "x = bytearray(300 * 1024 * 1024)\nprint('allocated')"
    limited = requests.post(
        server.url + "/run_code",
        json={"code": code, "language": "python", "memory_limit_MB": 128},
        timeout=60,
    )
    res = fusion.RunCodeResponse(**limited.json())
    assert res.status == fusion.RunStatus.Failed
    assert res.run_result.status == fusion.CommandRunStatus.Finished
    assert res.run_result.return_code == 1
    assert "MemoryError" in res.run_result.stderr and res.run_result.stdout == ""
    # Without the limit (-1: none of the request's own) the same allocation succeeds.
    free = requests.post(
        server.url + "/run_code",
        json={"code": code, "language": "python", "memory_limit_MB": -1},
        timeout=60,
    )
    res = fusion.RunCodeResponse(**free.json())
    assert res.status == fusion.RunStatus.Success and res.run_result.stdout == "allocated\n"


def test_fusion_other_language_is_a_sandbox_error(server, fusion):
    r = _requests().post(
        server.url + "/run_code", json={"code": "int main(){}", "language": "cpp"}, timeout=30
    )
    res = fusion.RunCodeResponse(**r.json())
    assert res.status == fusion.RunStatus.SandboxError
    assert "'cpp' is not supported" in res.message and "python" in res.message
    # The client raises on SandboxError (after its retries).
    with pytest.raises(Exception, match="not supported"):
        fusion.run_code(fusion.RunCodeRequest(code="x", language="cpp"), max_attempts=1)


def test_fusion_bad_request_is_400_naming_the_field(server, fusion):
    r = _requests().post(
        server.url + "/run_code",
        json={"code": "1", "files": {"a.txt": "not base64!"}, "unknown_field": 1},
        timeout=30,
    )
    assert r.status_code == 400
    assert r.json()["status"] == "SandboxError" and "files.a.txt" in r.json()["message"]


def test_fusion_limits_are_clamped_to_the_ceiling():
    sf = _fusion()
    s = Server("--preset", "full", "--workers", "1", "--timeout", "1s")
    try:
        sf.set_endpoint(s.url)
        start = time.monotonic()
        res = run(sf, code="while True: pass", run_timeout=30)
        took = time.monotonic() - start
        assert res.run_result.status == sf.CommandRunStatus.TimeLimitExceeded
        assert took < 3.0, took
        assert "run_timeout 30s clamped to the server's limit of 1s" in res.message
        # The client's default run_timeout (10 s) is served, not refused.
        res = run(sf, code="print('ok')")
        assert res.status == sf.RunStatus.Success and res.run_result.stdout == "ok\n"
    finally:
        s.stop()


# --- SandboxFusion: /run_jupyter ----------------------------------------------------------


def test_fusion_jupyter_keeps_state_and_reports_displays_errors_and_files(fusion):
    req = fusion.RunJupyterRequest(
        cells=[
            'a = "hello"',
            "a",
            "print(a)",
            'import sys\nsys.stderr.write("This is an error message\\n")',
            "assert False, 'boom'",
            "print(a, open('given.txt').read())",
            "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [2, 3, 5])\nplt.show()",
            "open('made.txt', 'w').write(a * 2)",
        ],
        files={"given.txt": base64.b64encode(b"file in").decode()},
        fetch_files=["made.txt"],
    )
    res = fusion.run_jupyter(req, max_attempts=1)
    assert res.status == fusion.RunStatus.Success, res.message
    assert res.driver.status == fusion.CommandRunStatus.Finished
    c = res.cells
    assert len(c) == 8
    assert c[0].stdout == "" and c[0].display == [] and c[0].error == []
    assert c[1].display[0]["text/plain"] == "'hello'"
    assert c[2].stdout == "hello\n"
    assert c[3].stderr == "This is an error message\n"
    assert c[4].error[0]["ename"] == "AssertionError" and c[4].error[0]["evalue"] == "boom"
    assert any("assert False" in line for line in c[4].error[0]["traceback"])
    assert c[4].stderr == ""  # Jupyter reports the exception as an error, not on stderr.
    assert c[5].stdout == "hello file in\n"  # an exception does not end the notebook
    png = [d for d in c[6].display if "image/png" in d]
    assert png and base64.b64decode(png[0]["image/png"]).startswith(b"\x89PNG\r\n\x1a\n")
    assert base64.b64decode(res.files["made.txt"]) == b"hellohello"


def test_fusion_jupyter_cell_timeout(fusion):
    start = time.monotonic()
    res = fusion.run_jupyter(
        fusion.RunJupyterRequest(cells=["x = 1", "while True: pass", "print(x)"], cell_timeout=1),
        max_attempts=1,
    )
    took = time.monotonic() - start
    assert res.status == fusion.RunStatus.Failed
    assert res.driver.status == fusion.CommandRunStatus.TimeLimitExceeded
    assert len(res.cells) == 2 and res.cells[1].error[0]["ename"] == "TimeoutError"
    assert "cell 1" in res.message
    assert took < 3.0, took


# --- Piston: /api/v2 ----------------------------------------------------------------------


def _pyston():
    try:
        import pyston
    except ImportError:
        skip_or_fail("the aiopyston client (module pyston) is not installed (make deps)")
    return pyston


def piston(server, calls):
    """Run `calls(client)` with an aiopyston client pointed at the server."""
    pyston = _pyston()

    async def main():
        with warnings.catch_warnings():
            # aiopyston passes aiohttp's deprecated verify_ssl.
            warnings.simplefilter("ignore", DeprecationWarning)
            client = pyston.PystonClient(base_url=server.url + "/api/v2/")
        try:
            return await calls(client), None
        except Exception as e:
            # Without its traceback, which holds the client's objects past the loop's end.
            return None, e.with_traceback(None)
        finally:
            await client.close_session()
            # aiopyston's HTTP.__del__ schedules one more close on its loop: let it go now,
            # while the loop runs.
            client._http_session = None
            await asyncio.sleep(0)

    value, error = asyncio.run(main())
    if error is not None:
        raise error
    return value



def test_piston_runtimes(server):
    import platform

    runtimes = piston(server, lambda c: c.runtimes())
    assert [(r.language, r.version) for r in runtimes] == [("python", platform.python_version())]
    assert "py" in runtimes[0].aliases and "python3" in runtimes[0].aliases
    found = piston(server, lambda c: c.get_runtimes("py"))
    assert found[0].language == "python"


def test_piston_execute_with_stdin_args_and_files(server):
    pyston = _pyston()
    main = (
        "import sys\n"
        "print(sys.argv[1:], repr(sys.stdin.read()), open('data.txt').read())\n"
        "print('to stderr', file=sys.stderr)\n"
    )
    out = piston(
        server,
        lambda c: c.execute(
            "python",
            [pyston.File(main, filename="main.py"), pyston.File("some data", filename="data.txt")],
            stdin="line",
            args=["a b", "c"],
        ),
    )
    run = out.raw_json["run"]
    # Piston adds the newline stdin lacks.
    assert out.run_stage.stdout == "['a b', 'c'] 'line\\n' some data\n"
    assert run["stderr"] == "to stderr\n"
    assert out.run_stage.code == 0 and run["status"] is None and run["signal"] is None
    assert run["output"] == out.run_stage.stdout + run["stderr"]
    assert out.langauge == "python" and out.version
    assert run["wall_time"] >= 0 and run["memory"] > 0


def test_piston_runtime_error_and_timeout(server):
    pyston = _pyston()

    async def calls(c):
        err = await c.execute("python3", [pyston.File("raise ValueError('bad')")])
        slow = await c.execute("py", [pyston.File("while True: pass")], run_timeout=500)
        return err, slow

    err, slow = piston(server, calls)
    assert err.raw_json["run"]["status"] == "RE" and err.run_stage.code == 1
    assert "ValueError: bad" in err.raw_json["run"]["stderr"]
    assert 'File "file0.code"' in err.raw_json["run"]["stderr"]  # Piston's default name
    s = slow.raw_json["run"]
    assert s["status"] == "TO" and s["signal"] == "SIGKILL" and s["code"] is None
    assert 450 <= s["wall_time"] < 2000


def test_piston_refuses_limits_above_the_ceiling_and_unknown_runtimes(server):
    pyston = _pyston()
    with pytest.raises(pyston.exceptions.ExecutionError, match="cannot exceed the configured"):
        piston(server, lambda c: c.execute("python", [pyston.File("1")], run_timeout=60_000))
    with pytest.raises(pyston.exceptions.ExecutionError, match="runtime is unknown"):
        piston(server, lambda c: c.execute("java", [pyston.File("1")]))
    with pytest.raises(pyston.exceptions.ExecutionError, match="runtime is unknown"):
        piston(server, lambda c: c.execute("python", [pyston.File("1")], version="2.7"))


def test_piston_encodings_and_memory_limit(server):
    requests = _requests()
    body = {
        "language": "python",
        "version": "3",
        "files": [
            {"name": "bin.dat", "content": base64.b64encode(b"\x00\xff").decode(), "encoding": "base64"},
            {"name": "prog.py", "content": "print(open('bin.dat','rb').read(), open('h.txt').read())"},
            {"name": "h.txt", "content": b"hex!".hex(), "encoding": "hex"},
        ],
    }
    r = requests.post(server.url + "/api/v2/execute", json=body, timeout=30).json()
    assert r["run"]["stdout"] == "b'\\x00\\xff' hex!\n"
    hog = {
        "language": "python",
        "version": "*",
        "files": [{"content": "x = bytearray(300 << 20)"}],
        "run_memory_limit": 128 << 20,
    }
    r = requests.post(server.url + "/api/v2/execute", json=hog, timeout=60).json()
    assert r["run"]["status"] == "RE" and "MemoryError" in r["run"]["stderr"]
    assert "memory" in r["run"]["message"]
    hog["run_memory_limit"] = -1  # none of the request's own, as aiopyston sends by default
    r = requests.post(server.url + "/api/v2/execute", json=hog, timeout=60).json()
    assert r["run"]["status"] is None and r["run"]["code"] == 0


def test_clients_present_tokens_the_way_they_can(tmp_path):
    # SandboxFusion's client sends no header of its own: the token rides in the endpoint's URL
    # (`http://user:TOKEN@host`), which HTTP clients send as `Authorization: Basic`.
    sf = _fusion()
    tokens = tmp_path / "tokens"
    tokens.write_text("compat-s3cret\n")
    s = Server("--preset", "full", "--workers", "1", "--token-file", str(tokens))
    try:
        host = s.url.split("://", 1)[1]
        sf.set_endpoint(f"http://fusion:wrong@{host}")
        with pytest.raises(Exception, match="code 401"):
            run(sf, code="print('no')")
        sf.set_endpoint(f"http://fusion:compat-s3cret@{host}")
        res = run(sf, code="print('yes')")
        assert res.status == sf.RunStatus.Success and res.run_result.stdout == "yes\n"
        # aiopyston sends its api_key as the Authorization header.
        pyston = _pyston()

        async def calls(c):
            return await c.execute("python", [pyston.File("print(6 * 7)")])

        pyston_client = pyston.PystonClient

        def keyed(base_url):
            return pyston_client(base_url=base_url, api_key="Bearer compat-s3cret")

        pyston.PystonClient = keyed
        try:
            out = piston(s, calls)
        finally:
            pyston.PystonClient = pyston_client
        assert out.run_stage.output == "42\n"
    finally:
        s.stop()

"""`pysandbox server` speaks E2B's code interpreter: the unmodified PyPI SDK
`e2b-code-interpreter`, pointed at the server by its environment variables (E2B_API_URL for the
control plane, E2B_SANDBOX_URL for every sandbox port), creates a sandbox, runs code with
streamed output, rich results, state and contexts, moves files, and kills it."""

import base64
import io
import json
import re
import time
import urllib.error
import urllib.request

import pytest

from conftest import Server, skip_or_fail

try:
    import e2b_code_interpreter
    from e2b_code_interpreter import Sandbox
except ImportError:  # pragma: no cover - depends on the machine
    e2b_code_interpreter = None

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def e2b_server():
    if e2b_code_interpreter is None:
        skip_or_fail("the E2B SDK is not installed (pip install e2b-code-interpreter)")
    s = Server("--preset", "full", "--workers", "2", "--timeout", "20s")
    yield s
    s.stop()


def point_sdk(monkeypatch, url, key="e2b_pysandbox"):
    monkeypatch.setenv("E2B_API_URL", url)
    monkeypatch.setenv("E2B_SANDBOX_URL", url)
    monkeypatch.setenv("E2B_API_KEY", key)
    monkeypatch.delenv("E2B_DEBUG", raising=False)
    monkeypatch.delenv("E2B_ACCESS_TOKEN", raising=False)


@pytest.fixture
def sbx(e2b_server, monkeypatch):
    point_sdk(monkeypatch, e2b_server.url)
    sandbox = Sandbox.create()
    yield sandbox
    sandbox.kill()


def live_sessions(url, token=None):
    req = urllib.request.Request(url + "/metrics")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(req, timeout=10) as r:
        text = r.read().decode()
    return int(re.search(r"^pysandbox_sessions (\d+)$", text, re.M).group(1))


def needs(module):
    try:
        __import__(module)
    except ImportError:
        skip_or_fail(f"{module} is not installed in the interpreter the sandbox runs")


def test_output_streams_to_callbacks_as_it_is_written(sbx):
    out, err = [], []
    code = (
        "import sys, time\n"
        # No flush: a streaming caller's stdout is line-buffered (a context is a session).
        "print('first')\n"
        "print('to stderr', file=sys.stderr, flush=True)\n"
        "time.sleep(1.0)\n"
        "print('last')\n"
    )
    start = time.monotonic()
    execution = sbx.run_code(
        code,
        on_stdout=lambda m: out.append((time.monotonic() - start, m)),
        on_stderr=lambda m: err.append(m),
    )
    took = time.monotonic() - start
    assert execution.error is None
    assert "".join(m.line for _, m in out) == "first\nlast\n"
    assert [m.line for m in err] == ["to stderr\n"]
    assert err[0].error and not out[0][1].error
    assert isinstance(out[0][1].timestamp, int)
    # The first line reached the callback while the code slept, not at the end.
    assert out[0][0] < took - 0.5
    assert "".join(execution.logs.stdout) == "first\nlast\n"
    assert execution.execution_count == 1


def test_state_is_kept_across_calls(sbx):
    assert sbx.run_code("x = 1").error is None
    execution = sbx.run_code("x + 1")
    assert execution.text == "2"
    assert execution.results[0].is_main_result
    assert execution.execution_count == 2


def test_env_vars_hold_for_one_run(sbx):
    code = "import os\nos.environ.get('GREETING'), os.environ.get('HOME_TOWN')"
    execution = sbx.run_code(code, envs={"GREETING": "hi \"there\"\n", "HOME_TOWN": "Zürich"})
    assert execution.error is None, execution.error
    assert execution.text == repr(("hi \"there\"\n", "Zürich"))
    assert sbx.run_code(code).text == "(None, None)"


def test_matplotlib_figure_arrives_as_png(sbx):
    needs("matplotlib")
    execution = sbx.run_code(
        "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.title('e2b')\nplt.show()\n"
    )
    assert execution.error is None, execution.error
    pngs = [r.png for r in execution.results if r.png]
    assert len(pngs) == 1
    data = base64.b64decode(pngs[0])
    assert data.startswith(PNG_MAGIC) and len(data) > 1000


def test_dataframe_arrives_as_html(sbx):
    needs("pandas")
    execution = sbx.run_code(
        "import pandas as pd\npd.DataFrame({'name': ['ada', 'bob'], 'n': [36, 41]})"
    )
    assert execution.error is None, execution.error
    [result] = execution.results
    assert result.is_main_result
    assert "<table" in result.html and "ada" in result.html and "41" in result.html
    assert "ada" in result.text


def test_code_error_is_execution_error(sbx):
    errors = []
    execution = sbx.run_code(
        "def f():\n    return 1 / 0\nf()\n", on_error=lambda e: errors.append(e)
    )
    e = execution.error
    assert e.name == "ZeroDivisionError"
    assert e.value == "division by zero"
    assert "Traceback" in e.traceback and "return 1 / 0" in e.traceback
    assert errors and errors[0].name == "ZeroDivisionError"
    # The context lives on after an exception.
    assert sbx.run_code("40 + 2").text == "42"


def test_second_context_has_its_own_state(sbx):
    sbx.run_code("shared = 'default'")
    ctx = sbx.create_code_context()
    assert ctx.language == "python"
    assert ctx.id in [c.id for c in sbx.list_code_contexts()]
    missing = sbx.run_code("shared", context=ctx)
    assert missing.error is not None and missing.error.name == "NameError"
    sbx.run_code("shared = 'second'", context=ctx)
    assert sbx.run_code("shared", context=ctx).text == "second"
    assert sbx.run_code("shared").text == "default"
    sbx.restart_code_context(ctx)
    assert sbx.run_code("shared", context=ctx).error.name == "NameError"
    sbx.remove_code_context(ctx)
    assert ctx.id not in [c.id for c in sbx.list_code_contexts()]
    with pytest.raises(Exception, match="not found"):
        sbx.run_code("1", context=ctx)


def test_files_write_and_read(sbx):
    info = sbx.files.write("/home/user/data/notes.txt", "hello from the host\n")
    assert info.name == "notes.txt"
    assert sbx.files.read("/home/user/data/notes.txt") == "hello from the host\n"
    # The code sees it in its working directory, and its files can be read back.
    execution = sbx.run_code(
        "text = open('data/notes.txt').read()\n"
        "open('out.bin', 'wb').write(bytes(range(256)))\n"
        "text.strip().upper()"
    )
    assert execution.text == "HELLO FROM THE HOST"
    assert bytes(sbx.files.read("out.bin", format="bytes")) == bytes(range(256))
    # A file-like object goes up as application/octet-stream rather than multipart.
    sbx.files.write("/tmp/up.bin", io.BytesIO(b"\x00\xffraw"))
    assert sbx.run_code("open('up.bin', 'rb').read()").text == repr(b"\x00\xffraw")
    from e2b import FileNotFoundException

    with pytest.raises(FileNotFoundException):
        sbx.files.read("/home/user/nope.txt")


def test_kill_ends_the_sessions(e2b_server, monkeypatch):
    point_sdk(monkeypatch, e2b_server.url)
    before = live_sessions(e2b_server.url)
    sandbox = Sandbox.create()
    sandbox.create_code_context()
    assert live_sessions(e2b_server.url) == before + 2
    assert sandbox.is_running()
    sandbox.kill()
    assert not sandbox.is_running()
    assert live_sessions(e2b_server.url) == before
    with pytest.raises(Exception):
        sandbox.run_code("1")
    # A second kill finds nothing.
    assert Sandbox.kill(sandbox.sandbox_id) is False


def test_sandbox_times_out_after_its_timeout_without_calls(e2b_server, monkeypatch):
    point_sdk(monkeypatch, e2b_server.url)
    before = live_sessions(e2b_server.url)
    sandbox = Sandbox.create(timeout=1)
    assert sandbox.run_code("2 * 3").text == "6"
    assert sandbox.is_running()
    time.sleep(1.5)
    assert not sandbox.is_running()
    assert live_sessions(e2b_server.url) == before
    with pytest.raises(Exception, match="timed out|not found"):
        sandbox.run_code("1")


def test_debug_mode_skips_the_control_plane(e2b_server, monkeypatch):
    # E2B_DEBUG=true: no create call; the SDK names its sandbox "debug_sandbox_id", opened on
    # first use.
    point_sdk(monkeypatch, e2b_server.url)
    monkeypatch.setenv("E2B_DEBUG", "true")
    sandbox = Sandbox.create()
    assert sandbox.sandbox_id == "debug_sandbox_id"
    assert sandbox.run_code("y = 5").error is None
    assert sandbox.run_code("y * 2").text == "10"


def test_with_tokens(tmp_path, monkeypatch):
    if e2b_code_interpreter is None:
        skip_or_fail("the E2B SDK is not installed (pip install e2b-code-interpreter)")
    token = "tok-" + base64.b16encode(bytes(range(8))).decode()
    (tmp_path / "tokens").write_text(token + "\n")
    s = Server("--preset", "full", "--workers", "1", "--token-file", str(tmp_path / "tokens"))
    try:
        from e2b import AuthenticationException

        point_sdk(monkeypatch, s.url, key="wrong")
        with pytest.raises(AuthenticationException):
            Sandbox.create()
        point_sdk(monkeypatch, s.url, key=token)
        sandbox = Sandbox.create()
        assert sandbox.run_code("x = 20").error is None
        assert sandbox.run_code("x + 1").text == "21"
        ctx = sandbox.create_code_context()
        assert sandbox.run_code("1 + 1", context=ctx).text == "2"
        sandbox.files.write("a.txt", "t")
        assert sandbox.files.read("a.txt") == "t"
        # The sandbox routes need the token too.
        body = json.dumps({"code": "1"}).encode()
        req = urllib.request.Request(
            s.url + "/execute",
            data=body,
            headers={"E2b-Sandbox-Id": sandbox.sandbox_id, "Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        assert e.value.code == 401
        e.value.close()
        assert live_sessions(s.url, token) == 2
        sandbox.kill()
        assert live_sessions(s.url, token) == 0
    finally:
        s.stop()

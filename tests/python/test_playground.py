"""The playground (`GET /` of `pysandbox server`) driven in headless Chromium with Playwright.

Debian's `chromium` (apt) is the browser, Playwright for Python (PyPI) drives it through
`executable_path`: no browser is downloaded. The server is the real binary started by the test
on loopback; the page is what it serves.
"""

import http.server
import os
import shutil
import threading
import time

import pytest

from conftest import Server, skip_or_fail

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

# Waits of the browser (milliseconds): a first matplotlib drawing in a fresh worker takes a
# second or two on a loaded CI machine.
WAIT = 30_000


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("playwright is not installed (make deps: pip install playwright)")
    if not os.access(CHROMIUM, os.X_OK):
        skip_or_fail("chromium is not installed (make deps: apt-get install chromium)")
    with sync_playwright() as p:
        # --no-sandbox: the tests run as root in CI, and Chromium refuses to start its own
        # (setuid/namespace) sandbox as root. The browser loads only the pages of the server
        # this test started on loopback (and the test's own control page below).
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    ctx = browser.new_context(accept_downloads=True)
    pg = ctx.new_page()
    pg.set_default_timeout(WAIT)
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(server.url + "/")
    # The page asked /v1/info and shows the server it talks to.
    wait_js(pg, "document.getElementById('server-info').textContent.includes('preset')")
    yield pg
    ctx.close()
    assert errors == [], "the page's script failed: %r" % errors


def wait_js(pg, expr):
    """Wait until `expr` is true in the page. As a function: a string predicate is evaluated
    with `eval`, which the page's CSP refuses."""
    pg.wait_for_function("() => " + expr)


def run(pg, code, status="ok"):
    """Type `code` in the editor, run it with Ctrl+Enter, wait for the run's end."""
    pg.fill("#code", code)
    pg.focus("#code")
    pg.keyboard.press("Control+Enter")
    pg.wait_for_selector("#status.badge.running", state="detached")
    pg.wait_for_selector("#status.badge." + status)


def console(pg):
    return pg.text_content("#console")


class Beacon:
    """An HTTP listener on another loopback port (another origin than the server's): a request
    to it is the host-side evidence that code from the sandbox ran or loaded something in the
    viewer's browser."""

    def __init__(self):
        hits = self.hits = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                hits.append(self.path)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


PLOT = """\
import time
import matplotlib.pyplot as plt
import pandas as pd

print("hello from the playground", flush=True)
time.sleep(1.5)
print("after the pause")
df = pd.DataFrame({"n": [1, 2, 3], "square": [1, 4, 9]})
df.to_csv("out.csv", index=False)
plt.plot(df.n, df.square, marker="o")
plt.title("squares")
df
"""


def test_run_prints_plots_and_shows_a_table(page, tmp_path):
    page.fill("#collect", "*.csv")
    page.fill("#limit-memory", "512M")
    page.fill("#code", PLOT)
    page.focus("#code")
    page.keyboard.press("Control+Enter")

    # Live output: the first line is on the page while the run still sleeps.
    wait_js(page, "document.getElementById('console').textContent.includes('hello from the')")
    assert page.get_attribute("#status", "class") == "badge running"
    assert "after the pause" not in console(page)

    page.wait_for_selector("#status.badge.ok")
    assert "after the pause" in console(page)

    # The plot, decoded and drawn by the browser.
    img = page.wait_for_selector(".result img")
    size = img.evaluate("i => [i.complete, i.naturalWidth, i.naturalHeight]")
    assert size[0] and size[1] > 0 and size[2] > 0, size
    assert img.get_attribute("src").startswith("data:image/png;base64,")

    # The DataFrame (the cell's value) as an HTML table, in a sandboxed iframe.
    frame_el = page.wait_for_selector(".result.main iframe")
    assert frame_el.get_attribute("sandbox") == ""
    table = page.frame_locator(".result.main iframe").locator("table")
    cells = table.locator("td").all_text_contents()
    assert cells[:2] == ["1", "1"] and "9" in cells, cells

    # The collected file, downloaded as the browser does.
    link = page.locator('#files a[data-name="out.csv"]')
    with page.expect_download() as dl:
        link.click()
    saved = tmp_path / "out.csv"
    dl.value.save_as(saved)
    assert saved.read_text() == "n,square\n1,1\n2,4\n3,9\n"

    # The run's time and memory, and the limits it ran under (the memory asked for included).
    wall = page.text_content('[data-stat="wall"]')
    memory = page.text_content('[data-stat="memory"]')
    assert wall.startswith("wall ") and ("ms" in wall or " s" in wall), wall
    assert memory.startswith("memory ") and "iB" in memory, memory
    limits = page.text_content("#limits")
    assert "memory 512M" in limits and "wall " in limits, limits

    shot = tmp_path / "playground.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    print("playground screenshot:", shot)


def test_failing_code_shows_a_readable_traceback(page):
    run(page, "def half(n):\n    return n / 0\n\nhalf(3)\n", status="error")
    assert page.is_visible("#error-box")
    tb = page.text_content("#traceback")
    assert tb.startswith("Traceback (most recent call last):"), tb
    assert "line 4" in tb and "line 2, in half" in tb and "return n / 0" in tb, tb
    assert page.text_content("#traceback .head") == "ZeroDivisionError: division by zero"
    assert page.locator("#traceback .lineno").all_text_contents() == ["4", "2"]

    # The next run that works clears it.
    run(page, "print('fine')")
    assert not page.is_visible("#error-box")


def test_session_toggle_keeps_state_between_runs(page, server):
    # Without a session, each run is a fresh interpreter.
    run(page, "x = 41")
    run(page, "print(x + 1)", status="error")
    assert "NameError" in page.text_content("#traceback")

    page.check("#session")
    wait_js(page, "document.getElementById('session-state').textContent.includes('state kept')")
    run(page, "x = 41")
    run(page, "print(x + 1)")
    assert console(page) == "42\n"
    assert page.text_content('[data-stat="session"]') == "session on"

    # Off again: the session is closed on the server (its DELETE), and the state is gone.
    sid = page.get_attribute("#session-state", "title").split()[1].rstrip(",")
    page.uncheck("#session")
    wait_js(page, "document.getElementById('session-state').textContent === ''")
    run(page, "print(x + 1)", status="error")
    import urllib.error
    import urllib.request

    req = urllib.request.Request(
        "%s/v1/sessions/%s/execute" % (server.url, sid),
        data=b'{"code": "print(x)"}', headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=30)
    assert e.value.code == 404


def hostile(beacon):
    """HTML that, if it ran or loaded in the viewer's page, would call the beacon."""
    return (
        '<img src="x" onerror="top.pwned = 1; fetch(\'%(b)s/onerror\')">'
        '<img src="%(b)s/pixel">'
        '<script>top.pwned = 2; fetch("%(b)s/script")</script>'
        '<b id="shown">rendered</b>'
    ) % {"b": beacon.url}


def test_hostile_results_do_not_run_in_the_page(page, browser):
    beacon = Beacon()
    try:
        html = hostile(beacon)
        # A refresh would navigate the iframe to another host.
        framed = html + '<meta http-equiv="refresh" content="0; url=%s/refresh">' % beacon.url
        code = (
            "class HTML:\n"
            "    def __init__(self, h): self.h = h\n"
            "    def _repr_html_(self): return self.h\n"
            "print(%r)\n"
            "display(HTML(%r))\n"
        ) % (html, framed)
        run(page, code)
        page.wait_for_timeout(1500)  # time for a load, a handler or a refresh to call out

        # The printed markup is shown as text, and made no element.
        assert html in console(page)
        assert page.locator("#console *:not(span)").count() == 0
        # The displayed HTML was rendered (in its iframe), inert.
        shown = page.frame_locator(".result iframe").locator("#shown")
        assert shown.text_content() == "rendered"
        assert page.evaluate("window.pwned") is None
        assert beacon.hits == []

        # The control: the same markup in a page without the playground's walls calls out, so
        # the beacon would have seen an attack that worked.
        ctrl = browser.new_page()
        try:
            ctrl.set_content(html)
            deadline = time.time() + 10
            while not {"/onerror", "/pixel", "/script"} <= set(beacon.hits):
                assert time.time() < deadline, beacon.hits
                ctrl.wait_for_timeout(100)
            assert ctrl.evaluate("window.pwned") in (1, 2)
        finally:
            ctrl.close()
    finally:
        beacon.close()


def test_with_tokens_the_page_loads_and_asks_for_one(browser, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("s3cret-playground-token\n")
    s = Server("--token-file", str(tokens), "--workers", "1")
    try:
        ctx = browser.new_context()
        pg = ctx.new_page()
        pg.set_default_timeout(WAIT)
        pg.goto(s.url + "/")
        pg.wait_for_selector("#token", state="visible")
        assert "needs a token" in pg.text_content("#server-info")

        run(pg, "print('no')", status="sandbox_error")
        assert "token" in pg.text_content("#traceback")

        pg.fill("#token", "s3cret-playground-token")
        pg.dispatch_event("#token", "change")
        wait_js(pg, "document.getElementById('server-info').textContent.includes('preset')")
        run(pg, "print(6 * 7)")
        assert console(pg) == "42\n"
        ctx.close()
    finally:
        s.stop()

"""Third-party packages through the Python package: numpy, pandas, matplotlib and pillow (installed
by `make deps` into the interpreter the sandbox runs) with the "full" preset, cold, warm and in a
session; `preload`; a preload the policy does not allow is a PolicyError before anything runs."""

import subprocess

import pytest

from pysandbox import PolicyError, Sandbox, SandboxConfig
from pysandbox._config import DEFAULT_MEMORY, FULL_MEMORY

from conftest import skip_or_fail


@pytest.fixture(scope="module", autouse=True)
def packages():
    # The sandbox runs python3.11 from PATH, as the package does by default.
    probe = subprocess.run(
        ["python3.11", "-c", "import numpy, pandas, matplotlib, PIL"], capture_output=True
    )
    if probe.returncode != 0:
        skip_or_fail("numpy, pandas, matplotlib and pillow are needed in python3.11 (make deps)")


def plot_png():
    # Runs in the sandbox (it travels as its source): a line plot, as PNG bytes.
    import io

    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1, 2], [2, 0, 1])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def image_png():
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 4), (0, 128, 255)).save(buf, "PNG")
    return buf.getvalue()


DESCRIBE = """(lambda pd: (lambda d: (list(d.shape), float(d.loc["mean", "x"])))(
    pd.DataFrame({"x": list(range(10)), "y": [v % 3 for v in range(10)]}).describe()
))(__import__("pandas"))"""


SESSION = """
d = pd.DataFrame({"x": list(range(10))}).describe()
fig, ax = plt.subplots()
ax.plot([1, 2])
buf = io.BytesIO()
fig.savefig(buf, format="png")
print(int(np.arange(4).sum()), float(d.loc["mean", "x"]), len(buf.getvalue()) > 1000,
      buf.getvalue()[:4].hex())
"""


def check(s):
    assert s.eval(DESCRIBE) == ([8, 2], 4.5)
    assert s.eval("int(__import__('numpy').arange(5).sum())") == 10
    png = s.call(plot_png)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
    assert s.call(image_png)[:4] == b"\x89PNG"


def test_packages_cold():
    check(Sandbox(SandboxConfig(preset="full", timeout=30)))


def test_packages_warm_with_preload():
    config = SandboxConfig(preset="full", timeout=30, preload=["pandas", "matplotlib.pyplot"])
    with Sandbox(config, pool=True, workers=1) as s:
        assert s.eval("[m in __import__('sys').modules for m in ('pandas', 'matplotlib.pyplot')]") == [True, True]
        check(s)
        with s.session() as ses:
            # A session keeps state between calls (and returns output, not values).
            ses.execute("import io, numpy as np, pandas as pd, matplotlib.pyplot as plt")
            out = ses.execute(SESSION).stdout
            assert out == "6 4.5 True 89504e47\n", out


def test_cold_runs_import_the_preloads_too():
    s = Sandbox(SandboxConfig(preset="full", timeout=30, preload=["numpy"]))
    assert s.eval("'numpy' in __import__('sys').modules") is True


@pytest.mark.parametrize("pool", [False, True])
def test_a_preload_the_policy_does_not_allow_is_refused(pool):
    with pytest.raises(PolicyError, match="preload 'numpy'.*allow_module\\('numpy'\\)"):
        Sandbox(SandboxConfig(preload=["numpy"]), pool=pool).eval("print('RAN')")
    with pytest.raises(PolicyError, match="preload: expected a list"):
        SandboxConfig(preload="numpy")


def test_memory_default_follows_the_preset():
    c = SandboxConfig(preset="full")
    assert c.max_memory == FULL_MEMORY and "memory" not in c.to_policy()["limits"]
    c.preset = "stdlib"
    assert c.max_memory == DEFAULT_MEMORY
    c.max_memory = 100
    assert c.to_policy()["limits"]["memory"] == "100M"
    assert SandboxConfig(max_memory=None).to_policy()["limits"]["memory"] == "none"
    assert SandboxConfig(preload=["json"]).to_policy()["preload"] == ["json"]


CELL = """
import matplotlib.pyplot as plt
import pandas as pd
from PIL import Image
fig, ax = plt.subplots(figsize=(2, 1), dpi=50)
ax.plot([1, 2])
plt.show()
display(Image.new("RGB", (8, 4), (255, 0, 0)))
pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
"""


def png_size(b64):
    # Decoded on the host as data, by PIL: the PNG's own size.
    import base64
    import io

    from PIL import Image

    raw = base64.b64decode(b64)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(raw)) as im:
        return im.size


def check_cell(r):
    assert r.status == "ok", r
    assert [x.is_main_result for x in r.results] == [False, False, True], r.results
    plot, image, table = r.results
    assert png_size(plot.data["image/png"]) == (100, 50)
    assert png_size(image.data["image/png"]) == (8, 4)
    assert "<table" in table.data["text/html"] and "<td>x</td>" in table.data["text/html"]
    assert "a" in table.data["text/plain"]
    # A notebook calling pysandbox shows the results natively: IPython's own formatter reads
    # their MIME bundles.
    formatters = pytest.importorskip("IPython.core.formatters")
    data, _ = formatters.DisplayFormatter().format(table)
    assert data["text/html"] == table.data["text/html"]
    data, _ = formatters.DisplayFormatter().format(plot)
    assert data["image/png"] == plot.data["image/png"]


@pytest.mark.parametrize("mode", ["cold", "warm", "session"])
def test_cells_give_plots_images_and_tables(mode):
    config = SandboxConfig(preset="full", timeout=30, preload=["matplotlib.pyplot", "pandas"])
    if mode == "cold":
        check_cell(Sandbox(config).execute(CELL, mode="cell"))
        return
    with Sandbox(config, pool=True, workers=1) as s:
        if mode == "warm":
            check_cell(s.execute(CELL, mode="cell"))
            return
        with s.session() as ses:
            check_cell(ses.execute(CELL, mode="cell"))
            # The figure of that cell was shown and closed, and is still there to show again.
            again = ses.execute("ax.set_title('again')\nfig", mode="cell")
            assert [x.is_main_result for x in again.results] == [True], again
            assert png_size(again.results[0].data["image/png"]) == (100, 50)
            assert ses.execute("len(plt.get_fignums())", mode="cell").results[0].data == {
                "text/plain": "0"
            }


@pytest.mark.parametrize("pool", [False, True])
def test_warmup_runs_once_before_the_calls(pool):
    warmup = ("import io\nimport pandas as pd\nimport matplotlib.pyplot as plt\n"
              "pd.DataFrame({'x': [1, 2]}).describe()\nfig, ax = plt.subplots()\n"
              "ax.set_title('t')\nfig.savefig(io.BytesIO(), format='png')\n"
              "pd._warmed = getattr(pd, '_warmed', 0) + 1")  # fmt: skip
    config = SandboxConfig(preset="full", timeout=30, preload=["pandas", "matplotlib.pyplot"],
                           warmup=warmup)  # fmt: skip
    assert config.to_policy()["warmup"] == warmup
    with Sandbox(config, pool=pool, workers=1) as s:
        for _ in range(2):
            r = s.execute("import pandas as pd, matplotlib.pyplot as plt\n"
                          "print(pd._warmed, plt.get_fignums(), 'fig' in globals())")  # fmt: skip
            assert r.stdout == "1 [] False\n", r
        check_cell(s.execute(CELL, mode="cell"))
    with pytest.raises(PolicyError, match="warmup: expected Python code"):
        SandboxConfig(warmup=3).to_policy()

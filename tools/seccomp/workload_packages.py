"""numpy, pandas, matplotlib and pillow doing ordinary work (run with `--preset full`): what
tools/seccomp/trace_workloads.sh traces for the third-party side of the allowlist."""

import io
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402

rng = np.random.default_rng(1)
a = rng.standard_normal((300, 300))
print("det", float(np.linalg.det(a[:50, :50])) != 0, "inv", np.linalg.inv(a).shape)
print("svd", np.linalg.svd(a[:100, :100], compute_uv=False)[:2].round(3))
print("fft", np.abs(np.fft.fft(a[0])).sum().round(3))
big = np.zeros(40_000_000 // 8)
big += 1  # a large allocation: mmap, then mremap/madvise when it grows and goes
grow = np.empty(0)
for _ in range(20):
    grow = np.concatenate([grow, np.ones(100_000)])
del big, grow
np.save("/tmp/a.npy", a)
m = np.load("/tmp/a.npy", mmap_mode="r")
print("memmap", float(m[0, 0]) == float(a[0, 0]))

df = pd.DataFrame({"k": rng.integers(0, 10, 10_000), "v": rng.standard_normal(10_000)})
print(df.groupby("k")["v"].agg(["mean", "count"]).shape)
df.to_csv("/tmp/d.csv", index=False)
back = pd.read_csv("/tmp/d.csv")
print("csv", back.shape, pd.date_range("2024-01-01", periods=3, freq="D", tz="UTC")[0])
df.to_pickle("/tmp/d.pkl")
print("pickle", pd.read_pickle("/tmp/d.pkl").shape)
print(df.describe().to_html()[:6])
print(pd.Series(["a", "b"]).str.upper().tolist())

fig, ax = plt.subplots()
ax.plot(rng.standard_normal(100).cumsum())
ax.set_title("text and fonts")
for fmt in ("png", "svg", "pdf"):
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt)
    print(fmt, len(buf.getvalue()) > 1000)
fig.savefig("/tmp/p.png")
plt.close(fig)
img = Image.open("/tmp/p.png").convert("L").resize((64, 48))
img.save("/tmp/p.jpg")
print("pil", img.size, os.path.getsize("/tmp/p.jpg") > 100)

"""The report as a user builds it: a tiny real study, real retraining, the CLI, and a real browser.

One module-scoped report (tiny synthetic MNIST and Fashion-MNIST under a temporary --data-dir, CIFAR-10
missing on purpose) serves every test here: about a minute and a half on two cores.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest

from hpo.models import SOURCES
from tests.conftest import ROOT, synthetic_images, write_study

pytestmark = pytest.mark.slow

EVIL = "<script>alert(1)</script>"
EVIL_ATTR = "<img src=x onerror=alert(2)>"


def write_idx(path: Path, arr: np.ndarray) -> None:
    arr = np.asarray(arr, dtype=np.uint8)
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.tobytes())


def tiny_data_dir(root: Path) -> Path:
    d = root / "data"
    (d / "fashion-mnist").mkdir(parents=True)
    xtr, ytr = synthetic_images(400, seed=0)
    xte, yte = synthetic_images(100, seed=1)
    np.savez(d / "mnist.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    xtr, ytr = synthetic_images(300, seed=2)
    xte, yte = synthetic_images(100, seed=3)
    for name, arr in (
        ("train-images-idx3-ubyte.gz", xtr),
        ("train-labels-idx1-ubyte.gz", ytr),
        ("t10k-images-idx3-ubyte.gz", xte),
        ("t10k-labels-idx1-ubyte.gz", yte),
    ):
        write_idx(d / "fashion-mnist" / name, arr)
    return d


def env_for(root: Path) -> dict[str, str]:
    return {
        **os.environ,
        "HPO_OFFLINE": "1",
        "HPO_CACHE_DIR": str(root / "cache"),
        "KERAS_HOME": str(root / "keras"),
        "HPO_DATA_DIR": "",
    }


def report_cli(root: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hpo.report", *args],
        capture_output=True,
        text=True,
        env=env_for(root),
        cwd=ROOT,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    data = tiny_data_dir(root)
    toml = write_study(root, name=EVIL, n_trials=2)
    r = subprocess.run(
        [sys.executable, "-m", "hpo.run", "--study", str(toml), "--data-dir", str(data), "--epochs", "1"],
        capture_output=True,
        text=True,
        env=env_for(root),
        cwd=ROOT,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    storage = f"sqlite:///{root / 'tiny.db'}"
    study = optuna.load_study(study_name=EVIL, storage=storage)
    study.set_user_attr("owner", EVIL_ATTR)
    out = root / "reports" / "tiny.html"
    t = time.perf_counter()
    r = report_cli(
        root,
        "--study",
        str(toml),
        "--data-dir",
        str(data),
        "--seeds",
        "2",
        "--epochs",
        "1",
        "--out",
        str(out),
    )
    seconds = time.perf_counter() - t
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return {
        "root": root,
        "toml": toml,
        "data": data,
        "out": out,
        "stdout": r.stdout,
        "stderr": r.stderr,
        "seconds": seconds,
    }


def test_report_retrains_and_fills_every_section(tiny):
    page = tiny["out"].read_text()
    log = tiny["stdout"]
    assert re.search(r"\[1/\d+\] evaluating study winner as trained \(trial \d\) on mnist", log)
    assert re.search(r"\[2/\d+\] training best \(trial \d\) on mnist", log)
    assert "epoch 1/1: val_accuracy" in log  # progress while training
    assert "skipped seed000_cifar10 on cifar10: dataset not available" in log
    assert "Traceback" not in tiny["stderr"]
    for sid in ("summary", "search", "curves", "checks", "retrained", "references"):
        assert f'<section id="{sid}">' in page
    for text in (
        "Best model architecture",
        "Conv2D",
        "Per-class precision",
        "Misclassified test images",
        "data:image/png;base64,",
        "McNemar",
        "b=",
        f"98.50 % (published in “{SOURCES['000']}”)",
        f"99.31 % (published in “{SOURCES['001']}”)",
        f"92.40 % (published in “{SOURCES['000']}”)",
        f"74.00 % (published in “{SOURCES['000']}”)",
        "CIFAR-10 is not available",
        "best params -&gt; fashion_mnist",
    ):
        assert text in page, text
    assert "not measured" in page  # the CIFAR-10 reference row
    cache = json.loads(tiny["out"].with_name("tiny.retrain.json").read_text())
    roles = sorted(r["spec"]["role"] for r in cache["runs"].values())
    assert roles.count("best") == 2 and roles.count("transfer") == 1 and roles.count("reference") == 6


def test_escaping_in_the_real_report(tiny):
    page = tiny["out"].read_text()
    assert EVIL not in page and EVIL_ATTR not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_rebuild_uses_the_cache_and_force_retrains(tiny):
    root, toml, data, out = tiny["root"], tiny["toml"], tiny["data"], tiny["out"]
    t = time.perf_counter()
    r = report_cli(
        root,
        "--study",
        str(toml),
        "--data-dir",
        str(data),
        "--seeds",
        "2",
        "--epochs",
        "1",
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    assert "training" not in r.stdout and r.stdout.count("cached:") == 10
    assert time.perf_counter() - t < tiny["seconds"] / 2
    r = report_cli(
        root,
        "--study",
        str(toml),
        "--data-dir",
        str(data),
        "--seeds",
        "1",
        "--epochs",
        "1",
        "--references",
        "none",
        "--force-retrain",
        "--out",
        str(root / "forced.html"),
    )
    assert r.returncode == 0, r.stderr
    assert "[2/2] training best" in r.stdout and "cached:" not in r.stdout
    page = (root / "forced.html").read_text()
    assert "References were skipped" in page


# --- a real browser ----------------------------------------------------------------------------------

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-unsafe-swiftshader",  # WebGL (parallel coordinates) in software, no fallback warning
    "--enable-logging=stderr",
    "--v=0",
    "--virtual-time-budget=15000",
    "--dump-dom",
)

# Injected into a copy of the report: records errors, console.error and alert() calls, then writes what it
# saw, with how many plotly divs drew an SVG or canvas, into the DOM that --dump-dom prints.
PROBE = """<script>
(function () {
  var seen = {errors: [], alerts: []};
  window.addEventListener('error', function (e) { seen.errors.push('error: ' + e.message); });
  window.addEventListener('unhandledrejection', function (e) { seen.errors.push('rejection: ' + e.reason); });
  var ce = console.error;
  console.error = function () { seen.errors.push('console.error: ' + Array.from(arguments).join(' '));
                                return ce.apply(console, arguments); };
  window.alert = function (m) { seen.alerts.push(String(m)); };
  window.addEventListener('load', function () {
    setTimeout(function () {
      var divs = document.querySelectorAll('.plotly-graph-div'), drawn = 0;
      divs.forEach(function (d) { if (d.querySelector('svg.main-svg, canvas')) drawn++; });
      seen.divs = divs.length; seen.drawn = drawn;
      var pre = document.createElement('pre'); pre.id = 'report-probe';
      pre.textContent = JSON.stringify(seen); document.body.appendChild(pre);
    }, 3000);
  });
})();
</script>"""


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None


def test_report_renders_in_headless_chromium_without_errors(tiny, tmp_path):
    chromium = find_chromium()
    if chromium is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is required in CI for the report's browser test (apt-get install chromium)")
        pytest.skip("chromium not installed")
    page = tiny["out"].read_text()
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("<head>", "<head>" + PROBE, 1))
    r = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", probed.as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
    )
    m = re.search(r'<pre id="report-probe">(.*?)</pre>', r.stdout, flags=re.S)
    assert m, f"the page did not finish loading: {r.stderr[-2000:]}"
    import html

    seen = json.loads(html.unescape(m.group(1)))
    assert seen["errors"] == []
    assert seen["alerts"] == []  # the study name and attrs did not run as script
    assert seen["divs"] == page.count('class="plotly-graph-div"') >= 10
    assert seen["drawn"] == seen["divs"]
    uncaught = [line for line in r.stderr.splitlines() if "CONSOLE" in line and "Uncaught" in line]
    assert uncaught == []

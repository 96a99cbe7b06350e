"""The HTML report in a real browser (headless Chromium): no console errors, leaderboards and plots rendered.

Skipped when no Chromium is installed, except under CI (``$CI`` set), where a missing browser is a failure.
The screenshot is kept in ``test-artifacts/report.png``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from _report_helpers import standard_database
from benchmark.cli import main

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
_TIMEOUT_S = 120
# Chromium writes each console message of the page (console.log/error, uncaught exceptions) to stderr as
# "...:INFO:CONSOLE:<line>] "<message>", source: <url> (<line>)" when logging to stderr is on.
_CONSOLE = re.compile(r":CONSOLE[:(].*")


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        pytest.fail("CI is set but Chromium is not installed (apt-get install -y chromium)")
    pytest.skip("Chromium is not installed (apt-get install -y chromium)")


def _browse(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [
        _chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
        "--enable-logging=stderr", "--v=0",
        # Let the page's scripts (plotly drawing every figure) finish before the DOM or screenshot is taken.
        "--virtual-time-budget=15000", *extra, page.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=_TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def _console_messages(stderr: str) -> list[str]:
    return [match.group(0) for match in _CONSOLE.finditer(stderr)]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    _chromium()
    root = tmp_path_factory.mktemp("browser")
    out = root / "index.html"
    assert main(["report", "--storage", standard_database(root / "r.db"), "--out", str(out)]) == 0
    return out


def test_report_renders_without_console_errors(report, tmp_path):
    done = _browse(report, tmp_path / "profile", "--dump-dom")
    assert _console_messages(done.stderr) == []
    dom = done.stdout
    assert dom.count('<tr data-loss="') == 3  # contrastive and multi_similarity on cub200, one loss on synthetic
    expected_plots = report.read_text(encoding="utf-8").count('class="plot"></div>')
    assert expected_plots >= 7
    # plotly replaced every empty figure container by its drawing
    assert dom.count('class="plot-container plotly"') == expected_plots
    assert dom.count('class="main-svg"') >= expected_plots
    assert "Hyperparameter importances (PedAnovaImportanceEvaluator)" in dom


def test_screenshot_kept_as_artifact(report, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    _browse(report, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,2400")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_console_errors_are_detected(tmp_path):
    """The check above would see a broken page: an uncaught exception reaches the captured log."""
    page = tmp_path / "broken.html"
    page.write_text("<html><body><script>console.error('boom'); notDefined();</script></body></html>")
    messages = _console_messages(_browse(page, tmp_path / "profile", "--dump-dom").stderr)
    assert any("boom" in m for m in messages) and any("notDefined is not defined" in m for m in messages)


def test_page_never_scrolls_sideways(report, tmp_path):
    # The widest table (cub200 with MLRC's reference columns) wraps its cells instead of widening the page.
    probe = tmp_path / "probe.html"
    measure = ("<script>window.addEventListener('load', function(){document.body.setAttribute('data-overflow', "
               "String(document.documentElement.scrollWidth - window.innerWidth));});</script></body>")
    probe.write_text(report.read_text(encoding="utf-8").replace("</body>", measure), encoding="utf-8")
    dom = _browse(probe, tmp_path / "profile", "--dump-dom", "--window-size=1280,900").stdout
    overflow = re.search(r'data-overflow="(-?\d+)"', dom)
    assert overflow and int(overflow.group(1)) <= 0

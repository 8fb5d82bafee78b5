"""The HTML pages of `relex report` and `relex data stats`, opened in headless Chromium.

A copy of each page gets a small script that, once the page has loaded, records every image's
decoded size and every resource the browser fetched; ``--dump-dom`` hands that back. A
deliberately broken image in the same copy proves the check sees failures. The report is also
saved as a screenshot (``RELEX_SCREENSHOT=path.png`` keeps it, e.g. for the README).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from synthetic_sweep import make_sweep

from relex.cli import main
from relex.data.sample import SAMPLE_PATH

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
         "--virtual-time-budget=10000"]
CHECK = """<img alt="control-broken" src="data:image/png;base64,AAAA"><script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const out = document.createElement('pre'); out.id = 'relex-check';
  out.textContent = JSON.stringify({
    images: imgs.map(i => ({alt: i.alt, ok: i.complete && i.naturalWidth > 0,
                            w: i.naturalWidth, h: i.naturalHeight})),
    fetched: performance.getEntriesByType('resource').map(e => e.name)});
  document.body.appendChild(out);
});
</script>"""

pytest.importorskip("matplotlib", reason="the plots need the report extra: pip install -e '.[report]'")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="chromium not installed (.ci/run installs it)")


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120)


def _render_check(page: Path, tmp_path: Path) -> dict:
    copy = tmp_path / f"check-{page.name}"
    copy.write_text(page.read_text(encoding="utf-8").replace("</body>", CHECK + "</body>"),
                    encoding="utf-8")
    proc = _chromium(tmp_path, "--dump-dom", copy.as_uri())
    found = re.search(r'<pre id="relex-check">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"chromium produced no check output: {proc.stderr[-2000:]}"
    import html

    return json.loads(html.unescape(found.group(1)))


def _assert_self_contained(text: str) -> None:
    # nothing to fetch: no external scripts, style sheets, fonts or images
    assert not re.search(r'(src|href)="(https?:|//)', text)
    assert "@import" not in text and "url(" not in text and "<script" not in text


def _assert_images(result: dict, expected: int) -> None:
    images = [i for i in result["images"] if i["alt"] != "control-broken"]
    control = [i for i in result["images"] if i["alt"] == "control-broken"]
    assert len(control) == 1 and not control[0]["ok"]  # the check does see a broken image
    assert len(images) == expected
    assert all(i["ok"] and i["w"] > 200 and i["h"] > 100 for i in images), images
    assert result["fetched"] == []  # data: URIs only; nothing loaded from anywhere


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    return make_sweep(tmp_path_factory.mktemp("html"), axes={"fgm": [0.0, 1.0], "head": ["cls", "marker"]},
                      seeds=[1, 2, 3], effect=lambda c: 3.0 * c["fgm"],
                      stop=lambda c, s: 2 if (c["head"] == "cls" and s == 1) else None)


def test_report_html_renders_every_plot(sweep, tmp_path, capsys):
    page = tmp_path / "report.html"
    assert main(["report", str(sweep), "--html", str(page)]) == 0
    capsys.readouterr()
    text = page.read_text(encoding="utf-8")
    _assert_self_contained(text)
    # configurations, effects, per-class F1, confusion matrix, learning curves, cost
    assert text.count("<img ") == 6
    _assert_images(_render_check(page, tmp_path), 6)

    shot = tmp_path / "report.png"
    proc = _chromium(tmp_path, "--window-size=1280,2400", f"--screenshot={shot}", page.as_uri())
    assert shot.exists(), proc.stderr[-2000:]
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[:2] == (2400, 1280)
    assert pixels[..., :3].std() > 0.05  # a page, not a blank screen
    if os.environ.get("RELEX_SCREENSHOT"):
        shutil.copy(shot, os.environ["RELEX_SCREENSHOT"])


def test_data_stats_html_renders_every_plot(tmp_path, capsys):
    page = tmp_path / "stats.html"
    assert main(["data", "stats", str(SAMPLE_PATH), "--html", str(page)]) == 0
    capsys.readouterr()
    text = page.read_text(encoding="utf-8")
    _assert_self_contained(text)
    # labels, label x type pair heatmap, entity distance, sentence length
    assert text.count("<img ") == 4
    _assert_images(_render_check(page, tmp_path), 4)

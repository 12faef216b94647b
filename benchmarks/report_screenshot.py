"""Screenshot of ``report.html`` in headless Chromium (Debian's ``chromium`` package).

    python benchmarks/report_screenshot.py [--out-dir OUT] [--png benchmarks/report-screenshot.png]

Without ``--out-dir`` it first scans the bundled example (``examples/noisy-digits``, default
settings; about 20 s on an idle 2-core CPU) into a temporary folder. It then writes the report
with the installed ``noisyclean report`` command, opens it from disk in headless Chromium
(no server, no network) at 1280 px wide and saves the top of the page as a PNG, reduced to
256 colours so that it stays small enough to commit.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def find_browser() -> str | None:
    """The first Chromium-like browser on PATH, or None."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def screenshot(browser: str, html: Path, png: Path, width: int, height: int) -> None:
    """Render ``html`` from disk in headless Chromium and save a ``width x height`` PNG."""
    subprocess.run(
        [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--window-size={width},{height}", f"--screenshot={png}", html.resolve().as_uri()],
        check=True, capture_output=True, timeout=120,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, help="an existing scan output folder")
    parser.add_argument("--png", type=Path, default=ROOT / "benchmarks/report-screenshot.png")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=1500)
    args = parser.parse_args()
    browser = find_browser()
    if browser is None:
        print("error: no Chromium found (Debian: apt-get install chromium)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out_dir
        if out is None:
            out = Path(tmp) / "out"
            start = time.perf_counter()
            subprocess.run(["noisyclean", "scan", str(ROOT / "examples/noisy-digits"),
                            "--out", str(out), "--quiet"], check=True)
            print(f"scan: {time.perf_counter() - start:.1f} s")
        html = Path(tmp) / "report.html"
        start = time.perf_counter()
        subprocess.run(["noisyclean", "report", str(out), "--output", str(html)], check=True)
        print(f"report: {time.perf_counter() - start:.1f} s, {html.stat().st_size / 1e3:.0f} kB")
        raw = Path(tmp) / "raw.png"
        screenshot(browser, html, raw, args.width, args.height)
        image = Image.open(raw).convert("RGB")
        small = image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.NONE)
        args.png.parent.mkdir(parents=True, exist_ok=True)
        small.save(args.png, optimize=True)
    print(f"screenshot: {args.png} ({args.png.stat().st_size / 1e3:.0f} kB, "
          f"{image.size[0]}x{image.size[1]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

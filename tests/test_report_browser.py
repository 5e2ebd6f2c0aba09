"""The report in a real browser: headless Chromium draws the charts and makes no network request.

Requests are attributed with Chromium's own NetLog: a request made on behalf of the page carries
the page's ``file://`` network isolation key, unlike the browser's background traffic (account
and search-engine pings), so "the page made no request" is checked exactly. A control page with
an http and an https image proves the check sees requests. All traffic is pointed at a closed
local proxy port, so nothing leaves the machine either way.
"""

import json
import shutil
import socket
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

from colakit.report import write_report
from colakit.report.svg import BASELINE_COLOR, PALETTE
from report_rundir import COMPRESSIONS, CURATIONS, TASKS, fabricate_rundir

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--disable-features=NetworkTimeServiceQuerying"]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed once we return: every proxied connection is refused


def chromium(tmp: Path, url: str, *extra: str) -> tuple[str, list[dict]]:
    """Run headless Chromium on ``url``; return stdout and the URL requests of its NetLog."""
    profile, netlog = tmp / f"profile{len(list(tmp.iterdir()))}", tmp / f"net{len(list(tmp.iterdir()))}.json"
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--proxy-server=http://127.0.0.1:{closed_port()}",
           "--proxy-bypass-list=<-loopback>", f"--log-net-log={netlog}", *extra, url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, url_requests(netlog)


def url_requests(netlog: Path) -> list[dict]:
    text = netlog.read_text()
    try:
        log = json.loads(text)
    except json.JSONDecodeError:  # a log closed mid-stream lacks its last brackets
        log = json.loads(text.rstrip().rstrip(",") + "]}")
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [e["params"] for e in log["events"] if e["type"] == start and "url" in e.get("params", {})]


def from_page(requests: list[dict]) -> list[str]:
    return [r["url"] for r in requests if str(r.get("network_isolation_key", "")).startswith("file://")]


def read_png(path: Path) -> np.ndarray:
    """Decode an 8-bit RGB/RGBA PNG with zlib (Pillow is not a dependency): height x width x channels."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + length
    width, height, depth, color_type, _, _, interlace = header
    assert depth == 8 and color_type in (2, 6) and interlace == 0, header
    bpp = 3 if color_type == 2 else 4
    raw, stride = zlib.decompress(b"".join(idat)), width * bpp
    image = np.zeros((height, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.int64)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1).astype(np.int64)
        if kind == 0:
            row = line
        elif kind == 1:  # Sub: a running sum along the pixels, per channel
            row = np.cumsum(line.reshape(width, bpp), axis=0).reshape(-1) % 256
        elif kind == 2:  # Up
            row = (line + prev) % 256
        else:  # Average and Paeth depend on the pixel just decoded: one byte at a time
            out, cur, up = bytearray(stride), line.tolist(), prev.tolist()
            for i in range(stride):
                a = out[i - bpp] if i >= bpp else 0
                b = up[i]
                if kind == 3:
                    out[i] = (cur[i] + ((a + b) >> 1)) & 255
                else:
                    c = up[i - bpp] if i >= bpp else 0
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    out[i] = (cur[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
            row = np.frombuffer(bytes(out), np.uint8).astype(np.int64)
        image[y], prev = row, row
    return image.reshape(height, width, bpp)[..., :3]


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    report = write_report(fabricate_rundir(tmp / "run"), tmp / "report.html")
    return report.html, tmp_path_factory.mktemp("chromium")


def test_charts_render_and_page_makes_no_request(page):
    html, tmp = page
    dom, requests = chromium(tmp, html.as_uri(), "--dump-dom")
    capabilities = {cap for task, (cap, *_) in TASKS.items() if task != "mmlu"}
    assert dom.count('<rect class="bar"') == len(COMPRESSIONS) * len(CURATIONS) * (len(capabilities) + 1)
    assert dom.count("<svg") == html.read_text().count("<svg") > 0
    assert from_page(requests) == []


def test_network_check_sees_requests_of_a_page_with_external_references(page):
    _, tmp = page
    control = tmp / "control.html"
    control.write_text('<html><body><img src="http://example.invalid/a.png"><img src="https://example.invalid/b.png">'
                       "</body></html>")
    _, requests = chromium(tmp, control.as_uri(), "--dump-dom")
    assert sorted(from_page(requests)) == ["http://example.invalid/a.png", "https://example.invalid/b.png"]


def test_screenshot_shows_the_bar_charts(page):
    html, tmp = page
    shot = tmp / "shot.png"
    # Tall enough to hold the headline table and the first bar chart.
    chromium(tmp, html.as_uri(), "--window-size=1280,2000", f"--screenshot={shot}")
    image = read_png(shot)
    assert image.shape == (2000, 1280, 3)
    colors = [BASELINE_COLOR, *PALETTE[:len(CURATIONS) - 1]]  # the curations' bar fills
    region = np.zeros(image.shape[:2], dtype=bool)
    for hex_color in colors:
        rgb = np.array([int(hex_color[i:i + 2], 16) for i in (1, 3, 5)], dtype=np.uint8)
        mask = (image == rgb).all(axis=-1)
        assert mask.sum() > 2000, f"bars in {hex_color} not drawn"
        region |= mask
    ys, xs = np.nonzero(region)
    chart = image[ys.min():ys.max() + 1, xs.min():xs.max() + 1].astype(np.int64)
    packed = (chart[..., 0] << 16) | (chart[..., 1] << 8) | chart[..., 2]  # one int per colour: fast unique
    assert len(np.unique(packed)) > 50  # bars, error bars, grid, antialiased text: not a blank box
    try:  # where Pillow happens to be installed, it must agree with the zlib decoder
        from PIL import Image
    except ImportError:
        return
    assert (np.asarray(Image.open(shot).convert("RGB")) == image).all()

"""Does the dashboard keep up? The page in headless Chromium against a real server; prints markdown.

    python bench/bench_dashboard.py [--depths 10 50 200 --seconds 15]
    python bench/bench_dashboard.py --gan   # the GAN page: the data plane's redraws per second

For each depth it opens `/?depth=D` (sigmoid, width 64, batch 128: the default net, deeper),
waits until the charts are drawn, then measures for `--seconds` inside the page:
stats frames received per second, animation frames per second (60 = the tab never stalls),
redraws per second of the gradient profile and of the layer x step heat map (the goal of #9:
at least 15 each at depth 50 with the tab at 25+ animation frames per second; a chart redraws
at most once per stats frame, so the frame rate caps them), main-thread time spent ingesting
frames and drawing charts (synchronous part: Plotly.animate's path rewrite runs in the next
animation frame), tasks longer than 50 ms (the browser's own "long task"), and the longest gap
between two animation frames.

Needs Debian's chromium (apt-get install chromium) and playwright (the test extra).
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

BACKEND = Path(__file__).resolve().parents[1] / "backend"

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]

# Installed before the page's own scripts: counts animation frames and long tasks.
PROBE = """
window.__bench = { raf: 0, maxGap: 0, longTasks: 0, longMs: 0, last: 0 };
(function tick(t) {
  const b = window.__bench;
  if (b.last) b.maxGap = Math.max(b.maxGap, t - b.last);
  b.last = t; b.raf++;
  requestAnimationFrame(tick);
})(0);
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) { window.__bench.longTasks++; window.__bench.longMs += e.duration; }
}).observe({ type: "longtask", buffered: false });
"""

# Wraps the dashboard's two entry points to time them; returns a reader.
INSTRUMENT = """() => {
  const d = gradscope.dashboard, b = window.__bench;
  b.ingestMs = 0; b.renderMs = 0;
  for (const [name, key] of [["ingest", "ingestMs"], ["render", "renderMs"]]) {
    const orig = d[name].bind(d);
    d[name] = (...a) => { const t = performance.now(); try { return orig(...a); } finally { b[key] += performance.now() - t; } };
  }
}"""

SNAPSHOT = """() => {
  const b = window.__bench, d = gradscope.dashboard;
  return { t: performance.now(), raf: b.raf, longTasks: b.longTasks, longMs: b.longMs, ingestMs: b.ingestMs,
           renderMs: b.renderMs, frames: d.info.frames, draws: d.scheduler.counts(), step: gradscope.step,
           points: d.series.step.length };
}"""


def start_server(data_dir: Path, cpus):
    """`serve()` in its own process on a socket bound here (pinned to `cpus` when given)."""
    sock = socket.create_server(("127.0.0.1", 0))
    code = (f"import sys, uvicorn; sys.path.insert(0, {str(BACKEND)!r}); from gradscope.server import Settings, create_app; "
            f"app = create_app(Settings(data_dir={str(data_dir)!r}, idle_pause_s=3600), warm_compile=False); "
            f"uvicorn.run(app, fd={sock.fileno()}, log_level='warning')")
    pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    proc = subprocess.Popen([sys.executable, "-W", "ignore", "-c", code], pass_fds=[sock.fileno()], preexec_fn=pin,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with urllib.request.urlopen(f"{url}/api/health", timeout=120):  # queued until the app is up
        pass
    return proc, sock, url


GAN_QUERY = "model=gan&dataset=ring8&width=64&batch_size=128&g_depth=3&d_depth=3&optimizer=adam"


def _window(browser, url, query, ready, seconds, before=None):
    """Open `/?query`, wait for `ready` (a JS predicate), run `before` (JS) if given, then measure for
    `seconds`: (snapshot before, snapshot after, longest frame gap ms, page errors). Deletes the session."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.add_init_script(PROBE)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{url}/?{query}")
    page.wait_for_function(ready, timeout=300_000, polling=200)
    if before:
        page.evaluate(before)
    page.evaluate(INSTRUMENT)
    a = page.evaluate(SNAPSHOT)
    page.evaluate("() => { window.__bench.maxGap = 0; }")
    page.wait_for_timeout(seconds * 1000)  # the measurement window (a benchmark, not a test)
    b = page.evaluate(SNAPSHOT)
    b["planes"] = page.evaluate("() => gradscope.dashboard.info.plane ? gradscope.dashboard.info.plane.frames : 0")
    gap = page.evaluate("() => window.__bench.maxGap")
    page.evaluate("""async () => {
      await fetch(`/api/sessions/${gradscope.id}`, { method: "DELETE", headers: { Authorization: `Bearer ${gradscope.token}` } });
    }""")
    context.close()
    return a, b, gap, errors


def measure_gan(browser, url, seconds):
    """The GAN page: the data plane's redraws per second (issue 20's goal: 20 or more; a redraw per
    animation frame while points glide between `plane` messages) beside G's and D's profiles."""
    a, b, gap, errors = _window(
        browser, url, GAN_QUERY, "() => window.gradscope && gradscope.dashboard.info.plane"
        " && gradscope.dashboard.info.plane.frames >= 3", seconds,
        before="() => gradscope.dashboard.cards.get('plane').scrollIntoView()")  # offscreen charts skip redraws
    s = (b["t"] - a["t"]) / 1000
    per_s = lambda chart: (b["draws"].get(chart, 0) - a["draws"].get(chart, 0)) / s
    return {
        "page": "GAN, widths 64, depths 3/3",
        "stats frames/s": (b["frames"] - a["frames"]) / s,
        "plane messages (total)": b["planes"],
        "animation frames/s": (b["raf"] - a["raf"]) / s,
        "plane redraws/s": per_s("plane"),
        "G profile redraws/s": per_s("gprofile"),
        "main thread busy": (b["ingestMs"] + b["renderMs"]) / (s * 1000),
        "long tasks/s": (b["longTasks"] - a["longTasks"]) / s,
        "longest frame gap ms": gap,
        "errors": len(errors),
    }


def measure(browser, url, depth, seconds):
    a, b, gap, errors = _window(browser, url, f"depth={depth}&width=64&batch_size=128",
                                "() => window.gradscope && gradscope.dashboard.info.renders >= 5"
                                " && gradscope.dashboard.series.step.length >= 50", seconds)
    s = (b["t"] - a["t"]) / 1000
    return {
        "depth": depth,
        "steps/s": (b["step"] - a["step"]) / s,
        "frames/s": (b["frames"] - a["frames"]) / s,
        "animation frames/s": (b["raf"] - a["raf"]) / s,
        "profile redraws/s": (b["draws"]["profile"] - a["draws"]["profile"]) / s,
        "heat map redraws/s": (b["draws"]["heatmap"] - a["draws"]["heatmap"]) / s,
        "main thread busy": (b["ingestMs"] + b["renderMs"]) / (s * 1000),
        "ms per frame ingested": b["ingestMs"] / max(1, b["frames"] - a["frames"]),
        "long tasks/s": (b["longTasks"] - a["longTasks"]) / s,
        "longest frame gap ms": gap,
        "errors": len(errors),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--depths", type=int, nargs="+", default=[10, 50, 200])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--gan", action="store_true", help="measure the GAN page's data plane instead of the MLP depths")
    parser.add_argument("--shared-cpus", action="store_true",
                        help="let server and browser share every core (default: server on core 0, browser on the rest)")
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    split = not args.shared_cpus and len(cpus) >= 2
    with tempfile.TemporaryDirectory() as tmp:
        proc, sock, url = start_server(Path(tmp), {cpus[0]} if split else None)
        if split:  # the browser (a child of this process) inherits this
            os.sched_setaffinity(0, set(cpus[1:]))
        print(f"server on cores {[cpus[0]] if split else cpus}, browser on {cpus[1:] if split else cpus}\n")
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                rows = [measure_gan(browser, url, args.seconds)] if args.gan else \
                    [measure(browser, url, d, args.seconds) for d in args.depths]
                browser.close()
        finally:
            proc.terminate()
            proc.wait(30)
            sock.close()
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |\n|" + "---:|" * len(cols))
    for r in rows:
        print("| " + " | ".join(f"{v:.0%}" if k == "main thread busy" else f"{v:,.1f}" if isinstance(v, float) else str(v)
                                for k, v in r.items()) + " |")


if __name__ == "__main__":
    main()

"""How the cost of what ships grows with depth, width and batch, against the minimal JAX step and
the machine's matmul rate; prints the table, writes bench/out/perf.html (Plotly, the installed
package's plotly.min.js inlined: no CDN) and a picture of it, docs/perf.png (Debian's chromium
through Playwright, as the tests drive the page), which the README shows.

    python bench/scale.py [--rounds 5] [--out bench/out/perf.html] [--png docs/perf.png]

Each point: the session's call (`Trainer(stats_every=None).run(K)`, rows built) and the minimal
step (bench/reference_step.py), interleaved; FLOP/s from the hand-counted matmul FLOPs of a step
(bench_engine.step_flops). A run is compute-bound where its FLOP rate nears the machine's matmul
rate (a 2048x2048 matmul), and overhead-bound where the rate stays far below it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))
sys.path.insert(0, str(ROOT / "bench"))

import jax  # noqa: E402
import numpy as np  # noqa: E402

import bench_engine  # noqa: E402
import reference_step  # noqa: E402
from bench_user import rates  # noqa: E402
from gradscope.engine import CompileCache, Trainer  # noqa: E402

BASE = {"depth": 10, "width": 64, "batch_size": 128}
SWEEPS = {"depth": [10, 50, 200], "width": [16, 32, 64, 128, 256, 512], "batch_size": [32, 128, 512, 1024]}


def point(values: dict, rounds: int) -> dict:
    config = {**BASE, **values, "activation": "sigmoid"}
    cache = CompileCache(background=False)
    session = Trainer(config, cache=cache, stats_every=None, specialize=True)
    k, shape = session.chunk_steps, session.shape
    params = reference_step.init(jax.random.PRNGKey(0), shape.n_in, shape.depth, shape.width, shape.classes)
    key = jax.random.PRNGKey(1)
    ref = jax.jit(reference_step.make_chunk(k, shape.batch)).lower(params, key, session.x, session.y).compile()
    got = rates({"minimal": lambda: jax.block_until_ready(ref(params, key, session.x, session.y)),
                 "ships": lambda: session.run(k)}, k, rounds)
    flops = bench_engine.step_flops(shape)
    cache.close()
    jax.clear_caches()
    return {"k": k, "ships": got["ships"], "minimal": got["minimal"], "gflops": got["ships"] * flops / 1e9,
            "minimal_gflops": got["minimal"] * flops / 1e9}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "perf.html"), help="the page (default %(default)s)")
    ap.add_argument("--png", default=str(ROOT / "docs" / "perf.png"), help="its picture (default %(default)s; '' for none)")
    ap.add_argument("--replot", action="store_true",
                    help="draw the last run's figures again (from the page's .json) without measuring (default: off)")
    args = ap.parse_args()
    data = Path(args.out).with_suffix(".json")
    if args.replot:
        saved = json.loads(data.read_text())
        return draw(saved["results"], saved["peak"], args)
    peak = bench_engine.matmul_flops_per_second() / 1e9
    print(f"JAX {jax.__version__} on {jax.default_backend()}; matmul 2048^2: {peak:,.0f} GFLOP/s; others at {BASE}\n")
    print("| sweep | value | K | ships, steps/s | minimal, steps/s | ratio | GFLOP/s | share of matmul |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    results = {}
    for name, values in SWEEPS.items():
        results[name] = []
        for v in values:
            r = point({name: v}, args.rounds)
            results[name].append({"value": v, **r})
            print(f"| {name} | {v} | {r['k']} | {r['ships']:,.0f} | {r['minimal']:,.0f} | {r['ships'] / r['minimal']:.2f}x | "
                  f"{r['gflops']:.1f} | {r['gflops'] / peak:.0%} |", flush=True)
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_text(json.dumps({"results": results, "peak": peak}))
    draw(results, peak, args)


def draw(results: dict, peak: float, args) -> None:
    """The page, and its picture unless --png is empty."""
    write_html(results, peak, Path(args.out))
    if args.png:
        screenshot(Path(args.out), Path(args.png))


def screenshot(page: Path, png: Path) -> None:
    """The whole page as a PNG, in headless Chromium (Debian's package, as tests/test_dashboard.py uses it)."""
    import shutil

    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium", args=["--no-sandbox"])
        tab = browser.new_page(viewport={"width": 1000, "height": 800})
        tab.goto(page.resolve().as_uri())
        tab.wait_for_function("document.querySelectorAll('.main-svg').length > 0")
        tab.screenshot(path=str(png), full_page=True)
        browser.close()
    print(f"wrote {png}")


def write_html(results: dict, peak: float, out: Path) -> None:
    import plotly

    plotly_js = (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_text()
    figures = []
    log_range = lambda lo, hi: [float(np.log10(lo)), float(np.log10(hi))]
    for name, pts in results.items():
        x = [p["value"] for p in pts]
        rates = [p[k] for p in pts for k in ("ships", "minimal")]
        figures.append({
            "title": f"cost against {name} (others at {BASE})",
            "data": [
                {"x": x, "y": [p["ships"] for p in pts], "name": "what ships, steps/s", "type": "scatter"},
                {"x": x, "y": [p["minimal"] for p in pts], "name": "minimal JAX step, steps/s", "type": "scatter"},
                {"x": x, "y": [p["gflops"] for p in pts], "name": "what ships, GFLOP/s", "yaxis": "y2",
                 "type": "scatter", "line": {"dash": "dot"}},
                {"x": [x[0], x[-1]], "y": [peak, peak], "name": "matmul rate (compute-bound above)", "yaxis": "y2",
                 "type": "scatter", "mode": "lines", "line": {"dash": "dash", "color": "grey"}},
            ],
            "layout": {"title": {"text": f"cost against {name}"}, "xaxis": {"type": "log", "title": {"text": name}, "dtick": "D2"},
                       "yaxis": {"type": "log", "title": {"text": "steps/s"}, "dtick": 1,
                                 "range": log_range(min(rates) / 2, max(rates) * 2)},
                       "yaxis2": {"type": "log", "overlaying": "y", "side": "right", "title": {"text": "GFLOP/s"},
                                  "range": log_range(1, peak * 2), "showgrid": False, "dtick": 1},
                       "legend": {"orientation": "h", "y": -0.3}, "margin": {"t": 50, "b": 110, "l": 80, "r": 80}, "height": 460},
        })
    divs = "\n".join(f'<div id="f{i}"></div>' for i in range(len(figures)))
    html = f"""<!doctype html><html><head><meta charset="utf-8"><title>gradscope: cost at scale</title>
<script>{plotly_js}</script></head><body><h1>gradscope: how the cost grows</h1>
<p>bench/scale.py, JAX {jax.__version__} on {jax.default_backend()}. Steps per second of the session's call (what ships)
and of the minimal JAX step; the dotted line its FLOP rate against the machine's matmul rate ({peak:,.0f} GFLOP/s).</p>
{divs}
<script>const F = {json.dumps(figures)};
F.forEach((f, i) => Plotly.newPlot("f" + i, f.data, f.layout));</script></body></html>"""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()

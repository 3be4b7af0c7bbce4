"""A server runs for days (issue 17: one died of memory after 77 minutes): its compile cache
holds at most its bound whatever the shapes met, and a paused session nobody uses leaves
memory, saved, and comes back whole when opened again."""
from __future__ import annotations

import asyncio

import httpx

from conftest import LiveServer
from test_server_disconnect import control, create


def run_on_loop(srv, coro):
    """A manager coroutine on the server's own event loop, waited for."""
    return asyncio.run_coroutine_threadsafe(coro, srv.manager.loop).result(120)


def test_the_servers_compile_cache_never_holds_more_than_its_bound(settings_for):
    from gradscope.server import create_app

    srv = LiveServer(create_app(settings_for(compile_cache_entries=2), warm_compile=False))
    try:
        seen = []
        for width in (3, 5, 6, 9):
            d = create(srv, paused=True, depth=1, width=width, batch_size=2, dataset="xor")
            control(srv, d, "step")
            seen.append(httpx.get(f"{srv.url}/api/health", timeout=60).json()["compile_cache"])
        assert all(c["entries"] <= 2 and c["max_entries"] == 2 for c in seen), seen
        assert seen[-1]["evictions"] >= 2
    finally:
        srv.stop()


def test_an_idle_paused_session_leaves_memory_and_comes_back_whole(live_server):
    srv = live_server(unload_idle_s=0.0)
    srv.manager = srv.server.config.app.state.manager
    d = create(srv, paused=True)
    for _ in range(3):
        control(srv, d, "step")
    before = httpx.get(f"{srv.url}/api/sessions/{d['id']}", timeout=60).json()
    rows = httpx.get(f"{srv.url}/api/sessions/{d['id']}/history", timeout=60).json()
    run_on_loop(srv, srv.manager.unload_idle())
    assert d["id"] not in srv.manager.sessions
    after = httpx.get(f"{srv.url}/api/sessions/{d['id']}", timeout=60).json()
    for key in ("config", "step", "status", "events", "rewind_to"):
        assert after[key] == before[key], key
    assert httpx.get(f"{srv.url}/api/sessions/{d['id']}/history", timeout=60).json() == rows
    assert control(srv, d, "step")["step"] == 3  # its weights came back: it trains on from step 3
    assert control(srv, d, "rewind")["applied"]["to_step"] == 0  # and its checkpoints


def test_a_watched_or_running_session_stays_loaded(live_server):
    from conftest import recv_until, ws_open

    srv = live_server(unload_idle_s=0.0)
    srv.manager = srv.server.config.app.state.manager
    running = create(srv)
    watched = create(srv, paused=True)
    with ws_open(srv, watched["id"]) as ws:
        recv_until(ws, lambda m: m["type"] == "hello")
        run_on_loop(srv, srv.manager.unload_idle())
        assert {running["id"], watched["id"]} <= set(srv.manager.sessions)

"""No token in any log, stored-session limits and rate limits, response headers, CSP in Chromium."""
from __future__ import annotations

import json

import httpx
import pytest

from conftest import SMALL, TestClient, recv_until, ws_open


def test_no_token_in_any_log(live_server, server_process, server_log):
    """Owner sockets, commands, forks and deletes on an in-process server (access log on,
    everything at INFO captured) and on `serve`'s own configuration: no token anywhere."""
    tokens = []
    for srv in (live_server(), server_process()):
        a = httpx.post(f"{srv.url}/api/sessions", json={**SMALL, "paused": True}, timeout=120).json()
        tokens.append(a["token"])
        auth = {"Authorization": f"Bearer {a['token']}"}
        with ws_open(srv, a["id"], a["token"]) as ws:
            assert recv_until(ws, lambda m: m["type"] == "hello")["role"] == "owner"
            ws.send(json.dumps({"type": "control", "id": 1, "action": "step"}))
            recv_until(ws, lambda m: m.get("id") == 1)
        with ws_open(srv, a["id"], "wrong-" + a["token"]) as ws:
            recv_until(ws, lambda m: m["type"] == "hello")
        f = httpx.post(f"{srv.url}/api/sessions/{a['id']}/fork", json={"paused": True}, timeout=120).json()
        tokens.append(f["token"])
        httpx.post(f"{srv.url}/api/sessions/{a['id']}/config", json={"changes": {"depth": 0}}, headers=auth, timeout=120)
        assert httpx.delete(f"{srv.url}/api/sessions/{a['id']}", headers=auth, timeout=120).status_code == 204
    srv.stop()  # its log is complete
    text = server_log.text()
    assert "GET /api/sessions" in text or "/ws" in text  # the access log was on
    for token in tokens:
        assert token not in text and token[:12] not in text


def test_stored_session_limits_and_create_rate(make_app, tmp_path):
    with TestClient(make_app(max_sessions_per_client=3, max_sessions=100, create_burst=1000)) as c:
        ids = [c.post("/api/sessions", json={**SMALL, "paused": True}).json() for _ in range(3)]
        r = c.post("/api/sessions", json={**SMALL, "paused": True})
        assert r.status_code == 429 and "delete some" in r.json()["detail"]
        assert c.post(f"/api/sessions/{ids[0]['id']}/fork", json={"paused": True}).status_code == 429
        c.delete(f"/api/sessions/{ids[0]['id']}", headers={"Authorization": f"Bearer {ids[0]['token']}"})
        assert c.post("/api/sessions", json={**SMALL, "paused": True}).status_code == 201
    with TestClient(make_app(max_sessions=2, create_burst=1000, data_dir=tmp_path / "b")) as c:
        for _ in range(2):
            assert c.post("/api/sessions", json={**SMALL, "paused": True}).status_code == 201
        r = c.post("/api/sessions", json={**SMALL, "paused": True})
        assert r.status_code == 507 and "limit of 2" in r.json()["detail"]
    with TestClient(make_app(create_burst=2, create_rate=0.001, data_dir=tmp_path / "c")) as c:
        codes = [c.post("/api/sessions", json={**SMALL, "paused": True}).status_code for _ in range(3)]
        assert codes == [201, 201, 429]


def test_abandoned_sessions_expire(make_app):
    import asyncio

    with TestClient(make_app(session_ttl_s=0.0, idle_pause_s=1e9)) as c:
        d = c.post("/api/sessions", json={**SMALL, "paused": True}).json()
        manager = c.app.state.manager
        c.portal.call(manager.expire)  # the monitor's periodic call, made now
        assert c.get(f"/api/sessions/{d['id']}").status_code == 404
        assert asyncio.iscoroutinefunction(manager.expire)


def test_security_headers(client):
    for path in ("/", "/api/meta", "/api/sessions/nope"):
        r = client.get(path)
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]


@pytest.mark.browser
def test_page_runs_under_its_csp_in_chromium(live_server):
    """The dashboard and Plotly load, connect and draw with no CSP violation."""
    sync_api = pytest.importorskip("playwright.sync_api")
    srv = live_server()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.add_init_script("window.__csp = []; document.addEventListener('securitypolicyviolation',"
                                 " e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));")
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{srv.url}/?depth=2&width=8&batch_size=16")
            page.wait_for_function("() => window.gradscope && gradscope.dashboard.series.step.length >= 20"
                                   " && gradscope.dashboard.info.renders >= 1", timeout=120_000, polling=100)
            assert page.evaluate("window.__csp") == [] and errors == []
            assert page.evaluate("typeof Plotly") == "object"
        finally:
            browser.close()


def test_serve_flags_set_the_limits_and_the_expiry(monkeypatch, capsys, tmp_path):
    """`gradscope serve --max-running ... --session-ttl-s ...` reach Settings under the same
    names; `--help` lists them with their defaults; a bad value exits 2 naming the flag."""
    import gradscope.engine
    import gradscope.server
    from gradscope import cli
    from gradscope.server import Settings

    seen = {}
    monkeypatch.setattr(gradscope.server, "serve", lambda **kw: seen.update(kw))
    monkeypatch.setattr(gradscope.engine, "enable_persistent_cache", lambda path: None)
    flags = {"max-running": "3", "max-sessions": "40", "max-sessions-per-client": "7", "create-rate": "0.25",
             "create-burst": "9", "session-ttl-s": "3600"}
    argv = ["serve", "--data-dir", str(tmp_path)] + [x for k, v in flags.items() for x in (f"--{k}", v)]
    assert cli.main(argv) == 0
    settings = Settings(**{k: v for k, v in seen.items() if k not in ("host", "port", "allow_origins")})
    assert (settings.max_running, settings.max_sessions, settings.max_sessions_per_client) == (3, 40, 7)
    assert (settings.create_rate, settings.create_burst, settings.session_ttl_s) == (0.25, 9, 3600.0)
    assert cli.main(["serve"]) == 0 and seen["max_running"] == Settings.max_running == 8
    assert seen["session_ttl_s"] == Settings.session_ttl_s
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert all(f"--{k}" in text for k in flags) and "(default 1209600: 14 days)" in text
    for bad in (["--max-running", "0"], ["--session-ttl-s", "soon"]):
        with pytest.raises(SystemExit) as exit_:
            cli.main(["serve", *bad])
        assert exit_.value.code == 2 and bad[0] in capsys.readouterr().err

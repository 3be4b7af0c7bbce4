"""Limits under concurrency, over real HTTP: every way to make a session run (create, play,
fork, compare, pair play, lesson start) shares one reserved count of running places, and
every way to make a new session (create, fork, compare, lesson start) passes the per-client
rate and stored-session limits. Plus: a command sent to a closing session is answered."""
from __future__ import annotations

import asyncio
import threading

import httpx

from conftest import SMALL, TestClient

SOLO, PAIR = "relu-alone-explodes", "lecun-equals-glorot"  # a lesson with one run, one with two


def owner(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def create(srv, **extra) -> dict:
    r = httpx.post(f"{srv.url}/api/sessions", json={**SMALL, "paused": True, **extra}, timeout=120)
    assert r.status_code == 201, r.text
    return r.json()


def statuses(srv, ids) -> list[str]:
    return [httpx.get(f"{srv.url}/api/sessions/{sid}", timeout=60).json()["status"] for sid in ids]


async def concurrently(srv, requests: list[tuple]) -> list[httpx.Response]:
    """Send every (method, path, json, headers) at once; the answers in the same order."""
    async with httpx.AsyncClient(base_url=srv.url, timeout=300) as c:
        return await asyncio.gather(*(c.request(m, p, json=j, headers=h) for m, p, j, h in requests))


def test_compare_and_lesson_start_pass_the_rate_limit(live_server):
    srv = live_server(create_burst=3, create_rate=0.001)
    a = create(srv)                                       # 1 of the burst of 3
    url = f"{srv.url}/api/sessions/{a['id']}/compare"
    assert httpx.post(url, json={}, timeout=120).status_code == 201          # 2
    r = httpx.post(f"{srv.url}/api/lessons/{PAIR}/start", json={"paused": True}, timeout=120)
    assert r.status_code == 429 and "too many new sessions" in r.json()["detail"]  # its 2 runs: 3 and over
    for r in (httpx.post(url, json={}, timeout=120),
              httpx.post(f"{srv.url}/api/lessons/{SOLO}/start", json={"paused": True}, timeout=120)):
        assert r.status_code == 429 and "too many new sessions" in r.json()["detail"], r.text


def test_compare_and_lesson_start_count_against_the_client_limit(live_server):
    srv = live_server(max_sessions_per_client=3)
    a = create(srv)
    url = f"{srv.url}/api/sessions/{a['id']}/compare"
    assert httpx.post(url, json={}, timeout=120).status_code == 201
    r = httpx.post(f"{srv.url}/api/lessons/{PAIR}/start", json={"paused": True}, timeout=120)
    assert r.status_code == 429 and "delete some" in r.json()["detail"]  # A fits, B does not: neither is kept
    assert httpx.post(f"{srv.url}/api/lessons/{SOLO}/start", json={"paused": True}, timeout=120).status_code == 201
    r = httpx.post(url, json={}, timeout=120)
    assert r.status_code == 429 and "delete some" in r.json()["detail"]
    assert httpx.get(f"{srv.url}/api/health", timeout=60).json()["sessions"] == 3


def test_two_concurrent_plays_cannot_both_pass_the_running_limit(live_server):
    srv = live_server(max_running=1)
    a, b = create(srv), create(srv)
    for _ in range(3):
        plays = [("POST", f"/api/sessions/{x['id']}/control", {"action": "play"}, owner(x["token"])) for x in (a, b)]
        codes = [r.status_code for r in asyncio.run(concurrently(srv, plays))]
        assert sorted(codes) == [200, 429], codes
        assert sorted(statuses(srv, [a["id"], b["id"]])) == ["paused", "running"]
        winner = a if codes[0] == 200 else b
        r = httpx.post(f"{srv.url}/api/sessions/{winner['id']}/control", json={"action": "pause"},
                       headers=owner(winner["token"]), timeout=120)
        assert r.status_code == 200


def test_concurrent_plays_forks_compares_and_lessons_never_exceed_the_running_limit(live_server):
    """Fourteen sessions' worth of requests to run, all at once, against a limit of 3 with one
    session running (A, whose owner's compare pauses it, then plays it and its B): the requests
    answered 2xx fit in what is left, and so does what runs afterwards."""
    srv = live_server(max_running=3)
    played, a, pair = [create(srv) for _ in range(4)], create(srv, paused=False), (create(srv), create(srv))
    plan = [(1, "POST", f"/api/sessions/{x['id']}/control", {"action": "play"}, owner(x["token"])) for x in played]
    plan += [(1, "POST", f"/api/sessions/{played[0]['id']}/fork", {"paused": False}, {})] * 3
    plan += [(1, "POST", f"/api/sessions/{played[1]['id']}/compare", {"paused": False}, {})] * 2  # B alone
    plan += [(1, "POST", f"/api/sessions/{a['id']}/compare", {"paused": False}, owner(a["token"]))]  # B beside A
    plan += [(2, "POST", f"/api/compare/{pair[0]['id']}/{pair[1]['id']}/control", {"action": "play"},
              {**owner(pair[0]["token"]), "X-Token-B": pair[1]["token"]})]
    lesson = (2, "POST", f"/api/lessons/{PAIR}/start", {}, {})  # its runs pause again after a step
    answers = asyncio.run(concurrently(srv, [p[1:] for p in [*plan, lesson]]))
    assert all(r.status_code in (200, 201, 429) for r in answers), [(r.status_code, r.text) for r in answers]
    granted = sum(n for (n, *_), r in zip(plan, answers, strict=False) if r.status_code < 300)
    assert 1 <= granted <= 2, [r.status_code for r in answers]  # these never pause by themselves
    assert any(r.status_code == 429 and "too many running" in r.json()["detail"] for r in answers)
    made = [r.json() for r in answers if r.status_code == 201]
    ids = {x["id"] for x in (*played, a, *pair)}
    ids |= {d[k]["id"] if k in ("a", "b") else d["id"] for d in made for k in ("a", "b", "id") if k in d}
    assert statuses(srv, sorted(ids)).count("running") <= 3
    assert httpx.get(f"{srv.url}/api/health", timeout=60).json()["running"] <= 3


def test_a_command_sent_while_the_worker_stops_is_answered_not_left_hanging(make_app):
    """Commands race the worker's last drain: each one is run or refused with 410, none waits forever."""
    from gradscope.server.errors import ActionError

    with TestClient(make_app()) as c:
        d = c.post("/api/sessions", json={**SMALL, "paused": True}).json()
        s = c.app.state.manager.sessions[d["id"]]
        assert s.submit(int).result(timeout=120) == 0    # the worker runs (and has built its trainer)
        futures = []

        def hammer():
            for _ in range(20_000):
                futures.append(s.submit(int))
                if futures[-1].done() and futures[-1].exception() is not None:
                    return
            s.worker.thread.join()  # the worker has ended: one more, after its last drain for sure
            futures.append(s.submit(int))

        t = threading.Thread(target=hammer)
        t.start()
        s.close(save=False)
        t.join()
        assert all(f.done() for f in futures), sum(not f.done() for f in futures)
        refused = [f.exception() for f in futures if f.exception() is not None]
        assert refused and all(isinstance(e, ActionError) and e.status == 410 for e in refused)
        assert futures[-1].exception() is refused[-1]

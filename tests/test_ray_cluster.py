"""The Ray backend (`gradscope serve --ray`) on a real multi-node Ray cluster on loopback.

One cluster for the module (a head with no CPUs, two worker nodes of 4 CPUs each): the
existing API, WebSocket, rewind, fork, compare, lesson, attach and page tests run again against
it (imported below: pytest collects them here, with this module's `make_app` and `server`), so
does the hypothesis state machine (test_server_stateful, a short run), and the cluster's own
behaviour is tested: sessions spread over the nodes, a lost node's sessions move with every row
before their last checkpoint kept, a full cluster queues sessions and the page says so.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

ray = pytest.importorskip("ray", reason="the [ray] extra is not installed")
from ray.cluster_utils import Cluster  # noqa: E402

from conftest import SMALL, recv_until, ws_open  # noqa: E402
from test_attach_server import (  # noqa: E402,F401
    test_a_monitored_loop_is_a_session_with_the_statistics_it_published,
    test_a_page_change_of_the_learning_rate_reaches_the_scripts_next_update,
    test_an_attached_session_refuses_what_only_its_script_can_do,
)
from test_attached_page import attached, test_owner_link_takes_the_page_and_the_page_sets_an_exposed_knob  # noqa: E402,F401,E501
from test_compare import test_a_lesson_over_http_from_start_to_verdict, test_compare_starts_b_from_a_state_and_steps_in_lockstep  # noqa: E402,F401,E501
from test_dashboard import Tab, browser, tabs, test_page_loads_offline_and_charts_fill, test_viewer_cannot_control_and_can_fork  # noqa: E402,F401,E501
from test_server_http import (  # noqa: E402,F401
    test_owner_actions_need_the_token,
    test_steps_then_history_and_export,
    test_validation_errors_name_field_and_choices,
)
from test_server_replay import test_fork_from_current_keeps_weights_history_and_timeline, test_fork_from_start_replays_the_timeline  # noqa: E402,F401,E501
from test_server_rewind import test_explode_rewind_then_clip, test_optimizer_switch_then_rewind_keeps_training  # noqa: E402,F401,E501
from test_server_stateful import run_machine  # noqa: E402
from test_server_ws import (  # noqa: E402,F401,E501
    test_divergence_pauses_with_layer_then_rewind,
    test_owner_streams_sets_and_pauses,
    test_shape_change_resets_and_says_so,
)

NODE_CPUS = 4
# Ray forks (and execs) its node processes from this process, where JAX already runs threads:
# JAX's warning is about a child that keeps running Python, which these do not
pytestmark = pytest.mark.filterwarnings("ignore:os.fork\\(\\) was called:RuntimeWarning")


@pytest.fixture(scope="module")
def cluster():
    """A head (no CPUs: it trains nothing) and two worker nodes, each a raylet of its own."""
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    c.workers_added = [c.add_node(num_cpus=NODE_CPUS) for _ in range(2)]
    c.wait_for_nodes()
    yield c
    ray.shutdown()
    c.shutdown()


@pytest.fixture
def make_app(settings_for, cluster):
    """The existing tests' app, on the cluster."""
    from gradscope.server import create_app

    def make(**overrides):
        return create_app(settings_for(ray_address=cluster.address, **overrides), warm_compile=False)

    return make


@contextmanager
def serving(tmp_path_factory, address: str, *flags: str):
    """`gradscope serve --ray ADDRESS [flags]`, as a user starts it: yields its URL; its log must stay clean."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backend = Path(__file__).resolve().parents[1] / "backend"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(backend), os.environ.get("PYTHONPATH")]))}
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gradscope", "serve", "--port", str(port), "--ray", address,
                                 "--data-dir", str(tmp_path_factory.mktemp("data")), *flags],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    health = None
    try:
        for _ in range(600):  # until it listens (importing JAX and joining the cluster first)
            try:
                with urllib.request.urlopen(f"{url}/api/health", timeout=5) as r:
                    health = json.loads(r.read())
                    break
            except OSError:
                assert proc.poll() is None, log.read_text()[-3000:]
                try:
                    proc.wait(0.2)
                except subprocess.TimeoutExpired:
                    pass
        assert health and health["backend"]["name"] == "ray", log.read_text()[-3000:]
        yield url
    finally:
        proc.terminate()
        proc.wait(60)
    text = log.read_text()
    assert "Traceback" not in text and " ERROR " not in text, text[-4000:]


@pytest.fixture(scope="module")
def server(tmp_path_factory, cluster):
    """The page tests' server (test_dashboard's, on the cluster)."""
    with serving(tmp_path_factory, cluster.address) as url:
        yield url


def create(srv, **body):
    r = httpx.post(f"{srv.url}/api/sessions", json={**SMALL, **body}, timeout=120)
    assert r.status_code == 201, r.text
    return r.json()


def summary(srv, sid):
    return httpx.get(f"{srv.url}/api/sessions/{sid}", timeout=30).json()


def first_in_line(m) -> bool:
    """A message saying the session waits first in the cluster's queue (or hello, for one that already did)."""
    waiting = m if m["type"] == "compile" else m.get("compiling") if m["type"] == "hello" else None
    return bool(waiting) and waiting.get("queue") == 1 and "next in line" in waiting["what"]


def stats_past(ws, step):
    return recv_until(ws, lambda m: m["type"] == "stats" and m["step"][-1] >= step)


def test_health_names_the_cluster(live_server):
    srv = live_server()
    backend = httpx.get(f"{srv.url}/api/health").json()["backend"]
    assert backend["name"] == "ray" and backend["nodes"] == 3 and backend["slots"] == 2 * NODE_CPUS


def test_eight_sessions_spread_over_the_nodes(live_server, cluster):
    srv = live_server(max_running=8)
    made = [create(srv) for _ in range(8)]
    nodes = {}
    for d in made:
        with ws_open(srv, d["id"]) as ws:
            stats_past(ws, 16)
        s = summary(srv, d["id"])
        assert s["status"] == "running" and s["node"], s
        nodes.setdefault(s["node"], []).append(d["id"])
    workers = {n.node_id[:8] for n in cluster.workers_added}
    assert {n.split()[0] for n in nodes} == workers, nodes  # SPREAD: both worker nodes train
    assert all(len(v) <= NODE_CPUS for v in nodes.values())  # one CPU each, none over-subscribed
    health = httpx.get(f"{srv.url}/api/health").json()
    assert health["running"] == 8 and health["backend"]["held"] == 8 and health["backend"]["queued"] == 0


def test_losing_a_node_moves_its_sessions_and_keeps_every_row_before_the_checkpoint(live_server, cluster):
    srv = live_server(flush_interval_s=0.2)
    made = [create(srv) for _ in range(4)]
    try:
        lost_node(srv, cluster, made)
    finally:
        cluster.workers_added.append(cluster.add_node(num_cpus=NODE_CPUS))  # the next tests' second node
        cluster.wait_for_nodes()


def moves(srv, sid) -> list[dict]:
    return [e for e in summary(srv, sid)["events"] if e["kind"] == "moved"]


def lost_node(srv, cluster, made):
    for d in made:  # training, and a checkpoint pulled to the front
        with ws_open(srv, d["id"]) as ws:
            while (summary(srv, d["id"])["checkpoint"] or 0) < 64:
                stats_past(ws, 0)
    before = {d["id"]: summary(srv, d["id"]) for d in made}
    victim = next(n for n in cluster.workers_added if any(s["node"].startswith(n.node_id[:8]) for s in before.values()))
    on_victim = [sid for sid, s in before.items() if s["node"].startswith(victim.node_id[:8])]
    rows = {sid: httpx.get(f"{srv.url}/api/sessions/{sid}/history").json() for sid in on_victim}
    cluster.remove_node(victim)
    cluster.workers_added.remove(victim)
    for sid in on_victim:
        with ws_open(srv, sid) as ws:
            while not moves(srv, sid):  # the move's event, or frames until it is recorded
                recv_until(ws, lambda m: m["type"] in ("event", "stats"))
            moved = moves(srv, sid)[0]
            resumed = moved["resumed"]
            # nothing older than the checkpoint interval lost: it resumes from the checkpoint seen before, or later
            assert resumed >= before[sid]["checkpoint"], (moved, before[sid])
            assert f"resumed from step {resumed}" in moved["detail"] and "were lost" in moved["detail"]
            assert not moved["node"].startswith(victim.node_id[:8])
            stats_past(ws, resumed + 32)  # and it trains on
        after = httpx.get(f"{srv.url}/api/sessions/{sid}/history").json()
        old = rows[sid]
        kept = [i for i, s in enumerate(old["step"]) if s < resumed]
        assert kept and after["step"][:len(kept)] == [old["step"][i] for i in kept]
        assert after["loss"][:len(kept)] == [old["loss"][i] for i in kept]  # the very rows, not retrained
        assert summary(srv, sid)["status"] == "running"
    for sid in set(before) - set(on_victim):  # the others never noticed
        assert not moves(srv, sid)


def test_a_full_cluster_queues_a_session_and_starts_it_when_a_place_frees(live_server):
    srv = live_server(ray_slots=2)
    a, b = create(srv), create(srv)
    with ws_open(srv, a["id"]) as ws:
        stats_past(ws, 16)
    c = create(srv)
    with ws_open(srv, c["id"]) as ws:
        recv_until(ws, first_in_line)
        assert summary(srv, c["id"])["step"] == 0
        health = httpx.get(f"{srv.url}/api/health").json()["backend"]
        assert health["queued"] == 1 and health["held"] == 2
        r = httpx.delete(f"{srv.url}/api/sessions/{a['id']}", headers={"Authorization": f"Bearer {a['token']}"})
        assert r.status_code == 204
        recv_until(ws, lambda m: m["type"] == "compile" and m["state"] == "end")
        stats_past(ws, 16)  # it trains once A's place is free
    assert summary(srv, b["id"])["status"] == "running"


def test_closing_a_queued_session_leaves_the_queue(live_server):
    srv = live_server(ray_slots=1)
    a = create(srv)
    with ws_open(srv, a["id"]) as ws:
        stats_past(ws, 16)
    b = create(srv)
    with ws_open(srv, b["id"]) as ws:
        recv_until(ws, first_in_line)
    r = httpx.delete(f"{srv.url}/api/sessions/{b['id']}", headers={"Authorization": f"Bearer {b['token']}"})
    assert r.status_code == 204
    assert httpx.get(f"{srv.url}/api/health").json()["backend"]["queued"] == 0


def test_one_client_holds_at_most_its_places_and_its_next_session_queues(live_server):
    srv = live_server(ray_slots_per_client=1)  # every session here comes from 127.0.0.1
    a = create(srv)
    with ws_open(srv, a["id"]) as ws:
        stats_past(ws, 16)
    b = create(srv)
    with ws_open(srv, b["id"]) as ws:
        recv_until(ws, first_in_line)  # the cluster has room (8 places), this client has not
        assert httpx.get(f"{srv.url}/api/health").json()["backend"]["held"] == 1
        httpx.post(f"{srv.url}/api/sessions/{a['id']}/control", json={"action": "pause"},
                   headers={"Authorization": f"Bearer {a['token']}"}).raise_for_status()
        assert summary(srv, b["id"])["step"] == 0  # a paused session keeps its place
        r = httpx.delete(f"{srv.url}/api/sessions/{a['id']}", headers={"Authorization": f"Bearer {a['token']}"})
        assert r.status_code == 204
        stats_past(ws, 16)


def test_generated_sequences_on_the_cluster(tmp_path, server_log, cluster):
    """The hypothesis state machine of test_server_stateful (creates, knobs, rewinds, forks, deletes,
    hostile and vanishing clients, attached scripts, SIGTERM and SIGKILL restarts of the front)
    against `gradscope serve` on the cluster: a killed front's actors go with it, and its sessions
    come back from the store onto new ones."""
    run_machine(tmp_path, server_log, examples=2, steps=10, ray_address=cluster.address)


@pytest.mark.browser
def test_the_page_of_a_queued_session_says_so_and_trains_when_a_place_frees(tmp_path_factory, cluster, browser):  # noqa: F811
    with serving(tmp_path_factory, cluster.address, "--ray-slots", "1") as url:
        srv = SimpleNamespace(url=url, ws_url=url.replace("http", "ws", 1))
        a = create(srv)
        with ws_open(srv, a["id"]) as ws:
            stats_past(ws, 16)
        b = create(srv)
        tab = Tab(browser).open(f"{url}/s/{b['id']}#token={b['token']}")
        shown = tab.wait("""() => {
          const s = document.getElementById('status'), busy = document.getElementById('busy');
          return s.dataset.status === 'queued' && !busy.hidden && busy.innerText.includes('next in line')
            && {status: s.innerText, busy: busy.innerText, waiting: document.body.innerText.includes('The cluster is full')};
        }""")
        assert shown["status"] == "queued" and "waiting for a place on the cluster (next in line)" in shown["busy"], shown
        assert shown["waiting"], shown  # the empty charts say why
        r = httpx.delete(f"{url}/api/sessions/{a['id']}", headers={"Authorization": f"Bearer {a['token']}"})
        assert r.status_code == 204
        tab.wait_steps(16)  # A's place went to it: it compiles and trains
        assert tab.eval("() => document.getElementById('status').dataset.status") == "running"
        tab.close()  # (deletes B, and checks the page met no error and asked nothing off the machine)

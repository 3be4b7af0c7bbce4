"""HTTP contract: create/read/history/export/delete, owner token, validation, limits (TestClient)."""
from __future__ import annotations

import csv
import io
import json

import httpx
import pytest

from conftest import SMALL, TestClient, recv_until, ws_open


def create(client, **body):
    r = client.post("/api/sessions", json={**SMALL, "paused": True, **body})
    assert r.status_code == 201, r.text
    return r.json()


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def test_create_read_never_leaks_token(client):
    d = create(client, seed=4)
    assert d["token"] and d["url"].endswith(f"/s/{d['id']}")
    assert d["config"]["seed"] == 4 and d["config"]["depth"] == 3 and d["config"]["activation"] == "sigmoid"
    r = client.get(f"/api/sessions/{d['id']}")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "paused" and body["step"] == 0 and "token" not in body
    assert d["token"] not in r.text
    assert client.get("/api/sessions").status_code == 405  # no listing: a link is the capability


def test_steps_then_history_and_export(client):
    d = create(client)
    for _ in range(3):
        r = client.post(f"/api/sessions/{d['id']}/control", json={"action": "step"}, headers=auth(d["token"]))
        assert r.status_code == 200, r.text
    assert r.json()["step"] == 2
    h = client.get(f"/api/sessions/{d['id']}/history").json()
    assert h["step"] == [0, 1, 2] and h["count"] == [1, 1, 1]
    assert len(h["loss"]) == 3 and len(h["grad_norm"][0]) == 4 and len(h["act_mean"][0]) == 3
    assert h["min"]["loss"] == h["loss"] == h["max"]["loss"] and "hist" not in h
    h2 = client.get(f"/api/sessions/{d['id']}/history", params={"since": 1, "max_points": 1, "hist": True}).json()
    assert h2["step"] == [2] and h2["count"] == [2] and len(h2["hist"][0]) == 4
    assert h2["min"]["loss"][0] == min(h["loss"][1:]) and h2["max"]["loss"][0] == max(h["loss"][1:])

    r = client.get(f"/api/sessions/{d['id']}/export", params={"format": "jsonl"})
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    header, *lines = [json.loads(x) for x in r.text.splitlines()]  # as `gradscope run --out` writes it
    assert header["config"]["depth"] == 3 and [x["step"] for x in lines] == [0, 1, 2]
    assert lines[1]["loss"] == pytest.approx(h["loss"][1], rel=1e-6)
    r = client.get(f"/api/sessions/{d['id']}/export", params={"format": "csv"})
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 3 and float(rows[2]["loss"]) == pytest.approx(h["loss"][2], rel=1e-6) and "grad_norm[3]" in rows[0]


def test_owner_actions_need_the_token(client):
    d = create(client)
    url = f"/api/sessions/{d['id']}"
    r = client.delete(url)
    assert r.status_code == 403 and "token" in r.json()["detail"]
    r = client.delete(url, headers=auth("not-the-token"))
    assert r.status_code == 403 and "match" in r.json()["detail"]
    r = client.post(f"{url}/control", json={"action": "play"})
    assert r.status_code == 403
    r = client.post(f"{url}/config", json={"changes": {"learning_rate": 0.5}}, headers=auth(d["token"]))
    assert r.status_code == 200 and r.json()["applied"]["changes"] == {"learning_rate": [0.1, 0.5]}
    assert client.delete(url, headers=auth(d["token"])).status_code == 204
    assert client.get(url).status_code == 404
    assert client.get(f"{url}/history").status_code == 404


def test_validation_errors_name_field_and_choices(client):
    r = client.post("/api/sessions", json={"activation": "bogus"})
    assert r.status_code == 422
    (err,) = r.json()["detail"]
    assert err["field"] == "activation" and "relu" in err["choices"] and "sigmoid" in err["choices"]
    r = client.post("/api/sessions", json={"depth": 0})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "depth"
    r = client.post("/api/sessions", json={"nope": 1})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "nope"
    assert "learning_rate" in r.json()["detail"][0]["choices"]
    d = create(client)
    r = client.post(f"/api/sessions/{d['id']}/config", json={"changes": {"optimizer": "sgdd"}},
                    headers=auth(d["token"]))
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "optimizer"
    assert "adam" in r.json()["detail"][0]["choices"]
    r = client.get(f"/api/sessions/{d['id']}/export", params={"format": "xml"})
    assert r.status_code == 422 and r.json()["detail"][0]["choices"] == ["jsonl", "csv"]


def test_hostile_input_never_500(client):
    d = create(client)
    sid = d["id"]
    attempts = [
        ("post", "/api/sessions", {"content": b"{not json"}),
        ("post", "/api/sessions", {"content": b"[1,2,3]", "headers": {"content-type": "application/json"}}),
        ("post", "/api/sessions", {"json": {"depth": "x" * 10_000}}),
        ("post", "/api/sessions", {"content": b"{\"learning_rate\": 1e999, \"noise\": NaN}"}),
        ("post", "/api/sessions", {"json": {"seed": -1, "width": 2**70}}),
        ("get", f"/api/sessions/{sid}/history", {"params": {"since": "-5"}}),
        ("get", f"/api/sessions/{sid}/history", {"params": {"max_points": "0"}}),
        ("get", "/api/sessions/" + "a" * 500, {}),
        ("post", f"/api/sessions/{sid}/fork", {"json": {"from": "middle"}}),
        ("post", f"/api/sessions/{sid}/control", {"json": {"action": "explode"}, "headers": auth(d["token"])}),
        ("post", f"/api/sessions/{sid}/config", {"json": {"changes": []}, "headers": auth(d["token"])}),
        ("post", f"/api/sessions/{sid}/config", {"json": {"changes": {}}, "headers": auth(d["token"])}),
        ("delete", f"/api/sessions/{sid}", {"headers": {"Authorization": b"Bearer \xff\xfe"}}),
    ]
    for method, url, kw in attempts:
        r = getattr(client, method)(url, **kw) if method != "post" else client.post(url, **kw)
        assert 400 <= r.status_code < 500, (url, kw, r.status_code, r.text)
        assert r.json()["detail"]


def test_meta_health_and_pages(client):
    m = client.get("/api/meta").json()
    for key in ("activations", "initializers", "datasets", "optimizers", "clip_modes", "limits", "version",
                "backend", "devices"):
        assert key in m
    assert "relu" in m["activations"] and "adam" in m["optimizers"]
    assert client.get("/api/health").json()["ok"] is True
    r = client.get("/static/vendor/plotly.min.js")
    assert r.status_code == 200 and len(r.content) > 100_000
    assert client.get("/static/no-such-file.js").status_code == 404
    assert client.get("/").status_code in (200, 404)


def test_running_session_limit_is_429(make_app):
    with TestClient(make_app(max_running=1)) as client:
        a = client.post("/api/sessions", json=SMALL)
        assert a.status_code == 201 and a.json()["status"] == "running"
        r = client.post("/api/sessions", json=SMALL)
        assert r.status_code == 429 and "limit" in r.json()["detail"]
        b = create(client)
        r = client.post(f"/api/sessions/{b['id']}/control", json={"action": "play"}, headers=auth(b["token"]))
        assert r.status_code == 429
        r = client.post(f"/api/sessions/{a.json()['id']}/control", json={"action": "pause"},
                        headers=auth(a.json()["token"]))
        assert r.status_code == 200
        r = client.post(f"/api/sessions/{b['id']}/control", json={"action": "play"}, headers=auth(b["token"]))
        assert r.status_code == 200 and r.json()["applied"]["status"] == "running"


def post_raw(srv, path, body: bytes, token=None):
    headers = {"content-type": "application/json", **(auth(token) if token else {})}
    return httpx.post(f"{srv.url}{path}", content=body, headers=headers, timeout=120)


def test_non_finite_numbers_are_refused_naming_the_field(live_server):
    srv = live_server()
    for raw in ("NaN", "Infinity", "-Infinity", '"nan"', '"inf"'):
        r = post_raw(srv, "/api/sessions", b'{"learning_rate": %s, "paused": true}' % raw.encode())
        assert r.status_code == 422, (raw, r.text)
        (err,) = r.json()["detail"]
        assert err["field"] == "learning_rate" and "must be a finite number" in err["message"], (raw, err)
    d = httpx.post(f"{srv.url}/api/sessions", json={**SMALL, "paused": True}, timeout=120).json()
    r = post_raw(srv, f"/api/sessions/{d['id']}/config", b'{"changes": {"learning_rate": NaN, "l2": Infinity}}', d["token"])
    assert r.status_code == 422
    assert [(e["field"], "finite" in e["message"]) for e in r.json()["detail"]] == [("learning_rate", True), ("l2", True)]
    with ws_open(srv, d["id"], d["token"]) as ws:
        recv_until(ws, lambda m: m["type"] == "hello")
        ws.send('{"type": "set", "id": 1, "changes": {"clip_value": -Infinity}}')
        err = recv_until(ws, lambda m: m["type"] in ("error", "ack"))
        assert err["type"] == "error" and err["field"] == "clip_value" and "finite" in err["message"], err
    assert httpx.get(f"{srv.url}/api/sessions/{d['id']}", timeout=120).json()["config"]["learning_rate"] == 0.1


def test_every_bad_field_is_listed_at_once(live_server):
    srv = live_server()
    body = {"activation": "relu6", "init": "he", "optimizer": "sgdd", "clip_mode": "clip", "dataset": "mnist",
            "depth": 0, "learning_rate": 11, "colour": "red"}
    r = httpx.post(f"{srv.url}/api/sessions", json=body, timeout=120)
    assert r.status_code == 422
    meta = httpx.get(f"{srv.url}/api/meta", timeout=120).json()
    by_field = {e["field"]: e for e in r.json()["detail"]}
    assert set(by_field) == set(body)
    for key, names in (("activation", "activations"), ("optimizer", "optimizers"), ("clip_mode", "clip_modes"),
                       ("dataset", "datasets"), ("init", "initializers")):
        assert by_field[key]["choices"] == meta[names], key
    assert "from 1 to 256" in by_field["depth"]["message"] and "<= 10" in by_field["learning_rate"]["message"]
    assert "learning_rate" in by_field["colour"]["choices"]
    # keys that do not fit the model, all of them, each with what it may be
    r = httpx.post(f"{srv.url}/api/sessions", json={"model": "rnn", "dataset": "spirals", "activation": "prelu",
                                                    "batchnorm": True, "depth": 9}, timeout=120)
    assert r.status_code == 422
    errs = r.json()["detail"]
    assert [e["field"] for e in errs] == ["batchnorm", "dataset", "activation", "depth"]  # the keys' own errors, then the rules'
    assert errs[0]["message"] == "the RNN does not take batchnorm (MLP, CNN, GAN do)" and errs[0]["choices"] == meta["keys_by_model"]["rnn"]
    assert errs[1]["choices"] == meta["datasets_by_model"]["rnn"] and errs[2]["choices"] == meta["activations_by_model"]["rnn"]


def test_malformed_json_is_named_body_and_keys_by_their_names(live_server):
    srv = live_server()
    d = httpx.post(f"{srv.url}/api/sessions", json={**SMALL, "paused": True}, timeout=120).json()
    for path, token in (("/api/sessions", None), (f"/api/sessions/{d['id']}/config", d["token"])):
        for raw in (b"{not json", b'{"depth": 3,\n "width": }', b'{"depth": 3'):
            r = post_raw(srv, path, raw, token)
            assert r.status_code == 422, r.text
            (err,) = r.json()["detail"]
            assert err["field"] == "body" and "not valid JSON" in err["message"], err
    r = post_raw(srv, "/api/sessions", b"[1, 2, 3]")
    assert r.status_code == 422 and r.json()["detail"] == [{"field": "body", "message": "must be a JSON object", "choices": None}]
    r = post_raw(srv, "/api/sessions", b'{"width": 16, "depth": "deep", "seq_len": [1]}')
    assert sorted(e["field"] for e in r.json()["detail"]) == ["depth", "seq_len"]
    r = httpx.post(f"{srv.url}/api/sessions/{d['id']}/fork", json={"from": "middle"}, timeout=120)
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "from"
    assert r.json()["detail"][0]["choices"] == ["current", "start"]


def test_meta_model_tables_and_compile_keys(live_server):
    from gradscope.config import make_config

    srv = live_server()
    m = httpx.get(f"{srv.url}/api/meta", timeout=120).json()
    gan = {"g_activation", "d_activation", "gan_loss", "lipschitz", "n_critic"}
    assert set(m["reset_keys"]) | {"activation", "optimizer", "model"} | gan == set(m["compile_keys"])
    assert not {"learning_rate", "clip_value", "l2", "g_lr", "clip_c"} & set(m["compile_keys"])
    assert set(m["model_names"]) == set(m["models"]) == set(m["activations_by_model"])
    assert m["activations_by_model"]["mlp"] == m["activations"] and "prelu" not in m["activations_by_model"]["rnn"]
    for model, names in m["activations_by_model"].items():  # each one accepted, by Config validation
        if "activation" not in m["keys_by_model"][model]:  # the GAN: an activation per network
            continue
        base = {"model": model, "dataset": m["datasets_by_model"][model][0]}
        for name in names:
            assert make_config({**base, "activation": name}).activation == name

"""The session export (`GET /api/sessions/{id}/export`) writes what `gradscope run --out` writes."""
import csv
import io
import json

import pytest

from conftest import SMALL
from test_cli_rows import run_in_process
from test_server_http import auth, create


def leaves(value):
    return sum(leaves(v) for v in value) if isinstance(value, list) else 1


def test_the_export_is_the_cli_file(client, monkeypatch, tmp_path):
    sets = [x for k, v in SMALL.items() for x in ("--set", f"{k}={v}")]
    cli_header, cli_records = run_in_process(monkeypatch, tmp_path, *sets, "--steps", "3")
    d = create(client)
    for _ in range(3):
        assert client.post(f"/api/sessions/{d['id']}/control", json={"action": "step"}, headers=auth(d["token"])).status_code == 200

    r = client.get(f"/api/sessions/{d['id']}/export", params={"format": "jsonl"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    assert r.headers["content-disposition"] == f'attachment; filename="gradscope-{d["id"]}.jsonl"'
    header, *records = [json.loads(line) for line in r.text.splitlines()]
    assert list(header) == list(cli_header) and header["config"] == cli_header["config"]
    assert header["backend"] == cli_header["backend"] and header["version"] == cli_header["version"]
    assert [list(x) for x in records] == [list(x) for x in cli_records]  # the same keys, in the same order
    assert [x["step"] for x in records] == [x["step"] for x in cli_records] == [0, 1, 2]
    assert [x["count"] for x in records] == [1, 1, 1]
    # the same seed, the same step 0: the same measurements
    assert records[0]["loss"] == pytest.approx(cli_records[0]["loss"], rel=1e-5)
    assert records[0]["grad_norm"] == pytest.approx(cli_records[0]["grad_norm"], rel=1e-4)
    assert records[0]["hist"] == cli_records[0]["hist"]

    r = client.get(f"/api/sessions/{d['id']}/export", params={"format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(r.text)))
    names, rows = table[0], table[1:]
    assert len(rows) == 3 and names[:2] == ["step", "count"] and [row[0] for row in rows] == ["0", "1", "2"]
    assert len(names) == len(set(names)) == sum(leaves(v) for v in cli_records[0].values())
    assert {"grad_norm[3]", "act_std[2]", "hist[0][31]", "z_hist[2][0]", "val_loss"} <= set(names)
    assert all(len(row) == len(names) for row in rows)
    assert rows[1][names.index("val_loss")] == ""  # null: evaluated at step 0 only


def test_an_empty_history_exports_its_header_only(client):
    d = create(client)
    header, *records = [json.loads(line) for line in client.get(f"/api/sessions/{d['id']}/export").text.splitlines()]
    assert records == [] and header["config"]["depth"] == SMALL["depth"] and "events" in header
    assert client.get(f"/api/sessions/{d['id']}/export", params={"format": "csv"}).text == ""

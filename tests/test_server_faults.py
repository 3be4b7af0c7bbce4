"""A bug in the app is a 500 with an error id, its traceback in the log and nowhere else."""
from __future__ import annotations

import logging

from conftest import SMALL, TestClient


def test_fault_is_500_with_error_id_and_logged(make_app, monkeypatch, server_log):
    from gradscope.server.sessions import Session

    def broken(self):
        raise ZeroDivisionError("secret internals")

    with TestClient(make_app(), raise_server_exceptions=False) as client:
        d = client.post("/api/sessions", json={**SMALL, "paused": True}).json()
        monkeypatch.setattr(Session, "summary", broken)
        r = client.get(f"/api/sessions/{d['id']}")
    assert r.status_code == 500
    body = r.json()
    assert body["detail"] == "internal server error" and "secret" not in r.text
    assert "ZeroDivisionError" not in r.text
    faults = [rec for rec in server_log.records if rec.levelno >= logging.ERROR]
    assert len(faults) == 1 and body["error_id"] in faults[0].getMessage()
    assert faults[0].exc_info[0] is ZeroDivisionError
    server_log.records.remove(faults[0])  # the fault this test made on purpose

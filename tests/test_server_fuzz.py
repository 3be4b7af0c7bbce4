"""A schema-driven fuzzer against the app's own OpenAPI spec: no request, however malformed, is a 500.

Every operation in /openapi.json gets bodies, query values and headers drawn from its schemas,
half of them bent out of shape (wrong types, huge numbers, NaN, deep nesting, odd strings).
Sessions it creates start paused, so the fuzzer tests the API and not the compiler.
"""
from __future__ import annotations

import json
import random

from conftest import SMALL

TRIES = 25
ODD = [None, True, -1, 0, 2**70, -(2**70), 1e308, "NaN", "", "x" * 5000, "\u0000\ud7ff", "../../etc", [], {}, [[[[]]]],
       {"a": {"b": {"c": None}}}, "1e999", 3.5, "relu", "sgd", "norm", "play", "rewind", "current", "start"]


def resolve(spec, schema):
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def value(spec, schema, rng, depth=0):
    """A value for `schema`: often a valid one, sometimes anything at all."""
    schema = resolve(spec, schema or {})
    if rng.random() < 0.3 or depth > 3:
        return rng.choice(ODD)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return value(spec, rng.choice(schema[key]), rng, depth + 1)
    if "enum" in schema:
        return rng.choice(schema["enum"])
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        chosen = rng.sample(sorted(props), k=rng.randint(0, len(props))) if props else []
        out = {k: value(spec, props[k], rng, depth + 1) for k in chosen}
        if rng.random() < 0.3:  # keys the schema does not know, including config keys
            out[rng.choice(["activation", "depth", "width", "learning_rate", "bogus", "changes", "action"])] = rng.choice(ODD)
        return out
    if kind == "array":
        return [value(spec, schema.get("items", {}), rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if kind == "integer":
        return rng.choice([0, 1, -1, 7, 2**31, schema.get("minimum", 0), schema.get("maximum", 10)])
    if kind == "number":
        return rng.choice([0.0, -1.0, 1e-12, 1e12, 0.5])
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "string":
        return rng.choice(["", "a", "relu", "csv", "jsonl", "current", "start", "x" * 300])
    return rng.choice(ODD)


def body_for(spec, op, rng):
    content = op.get("requestBody", {}).get("content", {})
    if "application/json" not in content:
        return None
    body = value(spec, content["application/json"]["schema"], rng)
    if isinstance(body, dict):
        body["paused"] = True  # created and forked sessions never start training (nor compiling)
    return body


def test_every_operation_survives_schema_driven_fuzzing(client):
    spec = client.get("/openapi.json").json()
    rng = random.Random(20261123)
    owner = client.post("/api/sessions", json={**SMALL, "paused": True}).json()
    statuses = {}
    operations = [(path, method, op) for path, ops in spec["paths"].items() for method, op in ops.items()]
    operations.sort(key=lambda o: o[1] == "delete")  # deletes last: the others need the session
    for path, method, op in operations:
        for _ in range(TRIES):
            sid = owner["id"] if rng.random() < 0.7 else rng.choice(["nope", "a" * 300, "%00", "..", owner["id"].upper()])
            url = path.replace("{sid}", sid)
            params, headers = {}, {}
            for p in op.get("parameters", []):
                if p["in"] == "query" and rng.random() < 0.8:
                    v = value(spec, p.get("schema", {}), rng)
                    params[p["name"]] = v if isinstance(v, (str, int, float)) else json.dumps(v)
                if p["in"] == "header":
                    headers["Authorization"] = rng.choice([f"Bearer {owner['token']}", "Bearer wrong", "Basic x", "Bearer", ""])
            body = body_for(spec, op, rng)
            kwargs = {"params": params, "headers": headers}
            if body is not None:
                if rng.random() < 0.15:
                    kwargs["content"] = rng.choice([b"{", b"null", b"[]", b"\xff\xfe", json.dumps(body).encode()[:-1]])
                    headers["content-type"] = "application/json"
                else:
                    kwargs["content"] = json.dumps(body, allow_nan=True).encode()
                    headers["content-type"] = "application/json"
            r = client.request(method.upper(), url, **kwargs)
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            assert r.status_code < 500, (method, url, kwargs, r.status_code, r.text[:500])
            if r.status_code >= 400:
                assert r.json().get("detail"), (method, url, r.text[:300])
    assert client.get("/api/health").status_code == 200
    assert any(400 <= s < 500 for s in statuses) and any(s < 300 for s in statuses), statuses

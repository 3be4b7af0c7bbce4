"""`gradscope.torch.watch`: a PyTorch loop's per-layer statistics, checked against an independent
autograd computation, and the page's learning rate reaching its optimizer."""
from __future__ import annotations

import copy
import importlib.util
import json
import math
import runpy
from pathlib import Path

import httpx
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import gradscope  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "torch_mlp.py"


def model_and_data(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 16), torch.nn.Tanh(),
                                torch.nn.Linear(16, 3))
    return model, torch.randn(32, 8), torch.randint(0, 3, (32,))


def norms(tensors) -> float:
    return math.sqrt(sum(float(t.detach().double().square().sum()) for t in tensors))


def test_the_statistics_equal_an_independent_autograd_computation(tmp_path):
    model, x, y = model_and_data()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    expected = []
    with gradscope.attach("torch", out=tmp_path / "t.jsonl") as gs:
        gradscope.torch.watch(model, opt, gs)
        for step in range(4):
            ref = copy.deepcopy(model)  # the same weights, its gradient by plain autograd
            ref_loss = torch.nn.functional.cross_entropy(ref(x), y)
            grads = torch.autograd.grad(ref_loss, list(ref.parameters()))
            by_layer = [grads[0:2], grads[2:4], grads[4:6]]
            raw = [norms(g) for g in by_layer]
            scale = min(1.0, 0.2 / (norms(grads) + 1e-6))  # clip_grad_norm_'s factor
            before = [[p.detach().clone() for p in m.parameters()] for m in (model[0], model[2], model[4])]
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.2)
            opt.step()
            gs.publish(step, loss=loss)
            after = [list(m.parameters()) for m in (model[0], model[2], model[4])]
            expected.append({"grad_norm": raw, "clipped_grad_norm": [r * scale for r in raw],
                             "weight_norm": [norms(a) for a in after],
                             "update_norm": [norms([p - b for p, b in zip(a, bb, strict=True)])
                                             for a, bb in zip(after, before, strict=True)],
                             "loss": float(ref_loss.detach()), "global_grad_norm": norms(grads)})
        gs.flush(30)
        records = list(gs.records)
    assert [r["step"] for r in records] == [0, 1, 2, 3]
    for rec, want in zip(records, expected, strict=True):
        for key, value in want.items():
            np.testing.assert_allclose(rec[key], value, rtol=2e-5, err_msg=key)
        np.testing.assert_allclose(rec["update_ratio"], np.divide(want["update_norm"], want["weight_norm"]), rtol=2e-5)
        assert rec["nonfinite_count"] == [0, 0, 0] and rec["nonfinite"] is False
        assert rec["clip_fraction"] == pytest.approx(1 - min(1.0, 0.2 / want["global_grad_norm"]), abs=1e-5)
    header = json.loads((tmp_path / "t.jsonl").read_text().splitlines()[0])
    assert header["attached"]["layers"] == ["0", "2", "4"] and header["attached"]["knobs"] == {"learning_rate": 0.1}


def test_a_requested_learning_rate_reaches_every_param_group_at_the_next_publish(tmp_path):
    model, x, y = model_and_data()
    opt = torch.optim.SGD([{"params": model[0].parameters()}, {"params": list(model[2].parameters()) + list(model[4].parameters())}],
                          lr=0.01)
    with gradscope.attach("lr", out=tmp_path / "lr.jsonl") as gs:
        gradscope.torch.watch(model, opt, gs)
        for step in range(3):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            gs.publish(step, loss=loss)
            if step == 0:
                gs.request(learning_rate=0.5)
        gs.flush(30)
        recs = list(gs.records)
    assert [g["lr"] for g in opt.param_groups] == [0.5, 0.5]
    # SGD: the update is lr x the gradient; step 1's update was taken before the publish that applied it
    np.testing.assert_allclose(np.divide(recs[1]["update_norm"], recs[1]["grad_norm"]), 0.01, rtol=1e-4)
    np.testing.assert_allclose(np.divide(recs[2]["update_norm"], recs[2]["grad_norm"]), 0.5, rtol=1e-4)
    with pytest.raises(ValueError, match="clip_value"):
        gs.source.apply({"clip_value": 1.0})


def test_accumulated_gradients_frozen_parts_and_nested_names(tmp_path):
    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 4)
            self.scale = torch.nn.Parameter(torch.ones(()))

        def forward(self, h):
            return torch.tanh(self.fc(h)) * self.scale

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = torch.nn.Linear(4, 4)
            self.stem.requires_grad_(False)  # frozen: not a layer
            self.blocks = torch.nn.ModuleList([Block(), Block()])
            self.bias = torch.nn.Parameter(torch.zeros(4))  # the root's own parameter

        def forward(self, h):
            h = self.stem(h)
            for b in self.blocks:
                h = b(h)
            return h + self.bias

    torch.manual_seed(1)
    net = Net()
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    xs = [torch.randn(8, 4) for _ in range(2)]
    with gradscope.attach("names", out=tmp_path / "n.jsonl") as gs:
        w = gradscope.torch.watch(net, opt, gs)
        assert w.layers == ["Net", "blocks.0", "blocks.0.fc", "blocks.1", "blocks.1.fc"]
        opt.zero_grad()
        for xb in xs:  # two micro-batches accumulated into one step
            net(xb).square().mean().backward()
        accumulated = [norms([p.grad for p in ps]) for ps in w._params]
        opt.step()
        gs.publish(0)
        gs.flush(30)
        np.testing.assert_allclose(gs.records[-1]["grad_norm"], accumulated, rtol=1e-5)
    with pytest.raises(ValueError, match="does not update"):
        gradscope.torch.watch(net, torch.optim.SGD(net.blocks[0].parameters(), lr=0.1), gs)


def test_non_finite_gradients_are_counted_per_layer_and_flagged(tmp_path):
    model, x, y = model_and_data()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gradscope.attach("nan", out=tmp_path / "nan.jsonl") as gs:
        gradscope.torch.watch(model, opt, gs)
        bad = x.clone()
        bad[0, 0] = float("inf")
        loss = torch.nn.functional.cross_entropy(model(bad), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        gs.publish(0, loss=loss)
        gs.flush(30)
        rec = gs.records[-1]
    assert rec["nonfinite"] is True and rec["nonfinite_count"][0] > 0 and rec["grad_norm"][0] is None  # NaN: null


def test_a_watched_pytorch_run_on_the_server_takes_the_pages_learning_rate(live_server):
    srv = live_server()
    model, x, y = model_and_data()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    gs = gradscope.attach("torch live", server=srv.url)
    gradscope.torch.watch(model, opt, gs)

    def steps(start, n):
        for step in range(start, start + n):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            gs.publish(step, loss=loss)
        gs.flush(30)

    steps(0, 3)
    sid, token = gs.remote.sid, gs.remote.token
    info = httpx.get(f"{srv.url}/api/sessions/{sid}").json()
    assert info["config"]["layers"] == ["0", "2", "4"] and info["config"]["knobs"] == ["learning_rate"]
    r = httpx.post(f"{srv.url}/api/sessions/{sid}/config", json={"changes": {"learning_rate": 0.2}},
                   headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    i = 3
    while opt.param_groups[0]["lr"] != pytest.approx(0.2):
        assert i < 50, "the page's learning rate never reached the optimizer"
        steps(i, 1)
        i += 1
    gs.close()
    hist = httpx.get(f"{srv.url}/api/sessions/{sid}/history").json()
    assert hist["step"] == list(range(i))


def test_the_example_trains_and_shows_sigmoid_vanishing(tmp_path, capsys):
    assert importlib.util.find_spec("torch") is not None
    out = {}
    for act in ("relu", "sigmoid"):
        path = tmp_path / f"{act}.jsonl"
        runpy.run_path(str(EXAMPLE), run_name="not_main")["main"](["--steps", "60", "--activation", act, "--out", str(path)])
        out[act] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert out[act]["layers"] == 9 and out[act]["dropped"] == 0 and len(path.read_text().splitlines()) == 61
    assert out["sigmoid"]["first/last layer grad_norm"] < 0.1 * out["relu"]["first/last layer grad_norm"]


def test_a_probe_records_the_norm_of_dl_dz(tmp_path):
    torch.manual_seed(2)
    fc1, fc2 = torch.nn.Linear(8, 16), torch.nn.Linear(16, 3)
    model = torch.nn.ModuleDict({"fc1": fc1, "fc2": fc2})
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    with gradscope.attach("probes", out=tmp_path / "p.jsonl") as gs:
        gradscope.torch.watch(model, opt, gs)
        z1 = gradscope.torch.probe(fc1(x), "fc1")
        z1.retain_grad()
        z2 = gradscope.torch.probe(fc2(torch.tanh(z1)), "fc2")
        z2.retain_grad()
        loss = torch.nn.functional.cross_entropy(z2, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        gs.publish(0, loss=loss)
        gs.flush(30)
        rec = gs.records[-1]
    assert rec["probes"] == ["fc1", "fc2"]
    np.testing.assert_allclose(rec["delta_norm"], [norms([z1.grad]), norms([z2.grad])], rtol=1e-5)

"""`gradscope run --vs`: both runs from the same initial state into one JSON Lines file."""
import json

from test_cli import gradscope


def _read(path):
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return lines[0], [r for r in lines[1:] if r["run"] == "a"], [r for r in lines[1:] if r["run"] == "b"]


def test_a_live_change_starts_from_the_same_state_and_diverges_after_step_0(tmp_path):
    out = tmp_path / "pair.jsonl"
    proc = gradscope("run", "--set", "depth=3", "--set", "width=8", "--set", "batch_size=16",
                     "--vs", "learning_rate=0.5", "--vs", "clip_mode=norm", "--steps", "6", "--out", str(out), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    header, a, b = _read(out)
    assert header["vs"]["kind"] == "live" and header["vs"]["changes"] == {"clip_mode": ["none", "norm"], "learning_rate": [0.1, 0.5]}
    assert header["vs"]["config"]["learning_rate"] == 0.5 and header["config"]["learning_rate"] == 0.1
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(6))
    # step 0's gradient is taken at the shared initial weights on the same batch: identical
    for key in ("loss", "grad_norm", "delta_norm", "weight_norm", "act_std", "hist"):
        assert a[0][key] == b[0][key], key
    assert a[0]["update_ratio"] != b[0]["update_ratio"]  # the change acts on the update
    assert a[1]["weight_norm"] != b[1]["weight_norm"] and a[1]["loss"] != b[1]["loss"]


def test_a_reset_key_reinitializes_b_from_the_same_seed(tmp_path):
    out = tmp_path / "pair.jsonl"
    proc = gradscope("run", "--set", "depth=3", "--set", "width=8", "--set", "batch_size=16", "--vs", "init=he_normal",
                     "--steps", "2", "--out", str(out), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    header, a, b = _read(out)
    assert header["vs"]["kind"] == "reset" and header["vs"]["config"]["init"] == "he_normal"
    # He's variance 2/fan_in against Glorot's 2/(fan_in+fan_out) on the square hidden layers: sqrt(2) in norm
    assert b[0]["weight_norm"][1] / a[0]["weight_norm"][1] == __import__("pytest").approx(2 ** 0.5, rel=1e-4)


def test_a_bad_vs_pair_exits_2_naming_it(tmp_path):
    proc = gradscope("run", "--vs", "activation", "--steps", "1", tmp_path=tmp_path)
    assert proc.returncode == 2 and "--vs" in proc.stderr and "key=value" in proc.stderr
    proc = gradscope("run", "--vs", "activation=relux", "--steps", "1", tmp_path=tmp_path)
    assert proc.returncode == 2 and "activation" in proc.stderr and "leaky_relu" in proc.stderr

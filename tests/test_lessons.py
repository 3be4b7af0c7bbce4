"""Lessons: every packaged lesson's verdict holds when its setup runs headless; the format's contracts."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from gradscope.lessons import Lesson, LessonError, evaluate, load_dir, load_file, load_lessons
from gradscope.lessons.runner import run_lesson

LESSONS = load_lessons()
MINIMAL = {
    "id": "tiny", "title": "t", "claim": "c", "setup": {"depth": 2, "width": 4}, "steps": 4, "look": "profile",
    "question": {"prompt": "p", "choices": ["x", "y"], "answer": 1},
    "verdict": {"checks": [{"name": "r", "value": {"stat": "grad_norm", "layer": 0, "steps": [0, 4]},
                            "over": {"stat": "grad_norm", "layer": -1, "steps": [0, 4]}, "op": "<", "threshold": 1.0,
                            "says": "{r:.2f}"}],
                "holds": "held {r:.2f}", "fails": "failed {r:.2f}"},
}


def test_at_least_twelve_lessons_each_with_a_question_and_a_chart():
    assert len(LESSONS) >= 12
    for lesson in LESSONS.values():
        assert 0 <= lesson.question.answer < len(lesson.question.choices)
        assert lesson.claim and lesson.explain and lesson.source


@pytest.mark.parametrize("lesson_id", sorted(LESSONS))
def test_every_lesson_verdict_holds_in_the_engine(lesson_id, compile_cache):
    """The lesson as written (its sizes, seed, steps): a lesson can never claim what the engine does not show."""
    lesson = LESSONS[lesson_id]
    histories = run_lesson(lesson, compile_cache, chunk_steps=16)
    assert {r: int(h["step"][-1]) for r, h in histories.items()} == {r: lesson.steps - 1 for r in histories}
    verdict = evaluate(lesson, histories)
    assert verdict["ready"], verdict
    assert verdict["holds"], (verdict["message"], verdict["checks"])
    assert verdict["message"] and "{" not in verdict["message"]
    json.dumps(verdict, allow_nan=False)  # the wire form: no NaN tokens


def _history(steps, grad_norm, **extra):
    g = np.asarray(grad_norm, dtype=np.float32)
    return {"step": np.asarray(steps), "grad_norm": g, "nonfinite": np.zeros(len(steps), np.int32), **extra}


def test_evaluator_matches_numpy_by_hand():
    lesson = Lesson.model_validate(MINIMAL)
    g = np.array([[1e-3, 0.5, 2.0], [3e-3, 0.5, 4.0], [5e-3, 0.5, 6.0], [7e-3, 0.5, 8.0]])
    v = evaluate(lesson, {"a": _history(range(4), g)})
    expected = g[:, 0].mean() / g[:, -1].mean()
    assert v["ready"] and v["holds"]
    assert v["values"]["r"] == pytest.approx(expected, rel=1e-6)
    assert v["message"] == f"held {expected:.2f}" and v["checks"][0]["says"] == f"{expected:.2f}"


def test_windows_select_steps_and_reducers_reduce():
    data = {**MINIMAL, "steps": 6, "verdict": {**MINIMAL["verdict"], "checks": [
        {"name": "late", "value": {"stat": "grad_norm", "layer": "max", "steps": [4, 6], "reduce": "min"}, "op": ">", "threshold": 0},
        {"name": "early", "value": {"stat": "loss", "steps": [0, 2], "reduce": "last"}, "op": "<", "threshold": 10}]}}
    data["verdict"]["holds"] = data["verdict"]["fails"] = "{late} {early}"
    lesson = Lesson.model_validate(data)
    g = np.arange(18, dtype=np.float32).reshape(6, 3)
    h = _history(range(6), g, loss=np.array([9.0, 8.0, 7.0, 6.0, 5.0, 4.0]))
    v = evaluate(lesson, {"a": h})
    assert v["values"] == {"late": 14.0, "early": 8.0}  # min over steps 4,5 of the max over layers; loss at step 1


def test_not_ready_until_the_last_step_or_a_divergence():
    lesson = Lesson.model_validate(MINIMAL)
    g = np.ones((2, 3))
    partial = _history(range(2), g)
    assert not evaluate(lesson, {"a": partial})["ready"]
    assert evaluate(lesson, {"a": partial})["message"] == ""
    partial["nonfinite"] = np.array([0, 1])
    assert evaluate(lesson, {"a": partial})["ready"]


def test_non_finite_values_fail_a_check_and_travel_as_null():
    lesson = Lesson.model_validate(MINIMAL)
    g = np.full((4, 3), np.nan)
    v = evaluate(lesson, {"a": _history(range(4), g)})
    assert v["ready"] and not v["holds"] and v["values"]["r"] is None
    assert v["message"] == "failed nan"
    json.dumps(v, allow_nan=False)


@pytest.mark.parametrize("path, value, words", [
    (("verdict", "checks", 0, "value", "stat"), "gradnorm", "grad_norm"),
    (("verdict", "checks", 0, "value", "layer"), 3, "layer 3 does not exist"),
    (("verdict", "checks", 0, "value", "layer"), None, "per layer"),
    (("verdict", "checks", 0, "value", "steps"), [0, 9], "ends after"),
    (("verdict", "checks", 0, "value", "run"), "b", "needs a `vs`"),
    (("verdict", "holds"), "{nope}", "{nope}"),
    (("verdict", "checks", 0, "op"), "between", "[low, high]"),
    (("question", "answer"), 2, "not an index"),
    (("setup", "activation"), "sigmoidal", "activation"),
    (("look",), "chart-profile", "look"),
    (("id",), "Bad Id", "slug"),
])
def test_a_bad_lesson_names_the_field(path, value, words):
    data = json.loads(json.dumps(MINIMAL))
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ValueError) as info:
        Lesson.model_validate(data)
    assert words in str(info.value)


GAN = {**MINIMAL, "setup": {"model": "gan", "dataset": "ring8", "g_depth": 2, "d_depth": 3, "width": 4},
       "verdict": {**MINIMAL["verdict"], "checks": [{"name": "r", "op": "<", "threshold": 1.0, "says": "{r:.2f}",
                   "value": {"stat": "critic_act_grad", "row": 1, "layer": 0, "steps": [0, 4]},
                   "over": {"stat": "critic_act_grad", "row": 1, "layer": -1, "steps": [0, 4]}}]}}


@pytest.mark.parametrize("measure, words", [
    ({"stat": "critic_act_grad", "layer": 0}, "per batch and d_hidden: give a row"),
    ({"stat": "critic_act_grad", "row": 2, "layer": 0}, "row 2 does not exist"),
    ({"stat": "critic_act_grad", "row": 0, "layer": 3}, "its d_hidden axis has 3 entries"),
    ({"stat": "g_grad_norm", "row": 0, "layer": 0}, "row is for a statistic along two axes"),
    ({"stat": "g_grad_norm", "layer": 3}, "its g_layer axis has 3 entries"),
    ({"stat": "grad_norm", "layer": 0}, "the gan model records no statistic 'grad_norm'"),
])
def test_a_gan_lessons_measures_name_their_axes(measure, words):
    data = json.loads(json.dumps(GAN))
    data["verdict"]["checks"][0]["value"] = {**measure, "steps": [0, 4]}
    with pytest.raises(ValueError) as info:
        Lesson.model_validate(data)
    assert words in str(info.value)


def test_a_row_picks_the_first_axis_of_a_two_axis_statistic():
    """critic_act_grad is (steps, real|fake, D's hidden layers): row 1 is the fake batch."""
    lesson = Lesson.model_validate(GAN)
    a = np.arange(24, dtype=np.float32).reshape(4, 2, 3) + 1
    v = evaluate(lesson, {"a": _history(range(4), np.ones((4, 4)), critic_act_grad=a)})
    assert v["values"]["r"] == pytest.approx(a[:, 1, 0].mean() / a[:, 1, -1].mean(), rel=1e-6)


def test_a_change_must_be_live_and_before_the_end():
    with pytest.raises(ValueError, match="live keys only"):
        Lesson.model_validate({**MINIMAL, "change": {"at": 2, "set": {"depth": 3}}})
    with pytest.raises(ValueError, match="before steps"):
        Lesson.model_validate({**MINIMAL, "change": {"at": 4, "set": {"learning_rate": 0.5}}})
    with pytest.raises(ValueError, match="learning_rate"):
        Lesson.model_validate({**MINIMAL, "change": {"at": 2, "set": {"learning_rate": -1}}})


def test_a_lecturer_file_in_toml_or_json_loads_and_mistakes_name_the_file(tmp_path):
    toml = tmp_path / "tiny.toml"
    toml.write_text('''title = "t"\nclaim = "c"\nsteps = 4\nlook = "profile"\n
[setup]\ndepth = 2\nwidth = 4\n
[question]\nprompt = "p"\nchoices = ["x", "y"]\nanswer = 1\n
[verdict]\nholds = "held {r:.2f}"\nfails = "failed"\n
[[verdict.checks]]\nname = "r"\nop = "<"\nthreshold = 1.0\n
[verdict.checks.value]\nstat = "grad_norm"\nlayer = 0\nsteps = [0, 4]\n''')
    lesson = load_file(toml)
    assert lesson.id == "tiny" and lesson.config().depth == 2
    (tmp_path / "other.json").write_text(json.dumps({**MINIMAL, "id": "other"}))
    assert [x.id for x in load_dir(tmp_path)] == ["other", "tiny"]
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(LessonError, match="broken.json"):
        load_dir(tmp_path)


def test_ids_are_unique_across_directories(tmp_path):
    (tmp_path / "sigmoid-depth.json").write_text(json.dumps({**MINIMAL, "id": "sigmoid-depth"}))
    with pytest.raises(LessonError, match="already defined"):
        load_lessons([tmp_path])
    (tmp_path / "sigmoid-depth.json").unlink()
    (tmp_path / "mine.json").write_text(json.dumps({**MINIMAL, "id": "theirs"}))
    with pytest.raises(LessonError, match="differs from the file name"):
        load_lessons([tmp_path])


def test_lecun_vs_glorot_matches_the_variance_formulas(compile_cache):
    """First layer 2x32: LeCun variance 1/2, Glorot 2/34, so the norms differ by sqrt(17/2); square layers: equal."""
    lecun = evaluate(LESSONS["lecun-equals-glorot"], run_lesson(LESSONS["lecun-equals-glorot"], compile_cache, 16))
    assert lecun["values"]["first"] == pytest.approx(math.sqrt(17 / 2), rel=0.15)
    assert lecun["values"]["hidden"] == pytest.approx(1.0, abs=1e-6)


def test_the_server_serves_a_lecturers_directory(tmp_path, live_server):
    import httpx

    (tmp_path / "tiny.json").write_text(json.dumps(MINIMAL))
    srv = live_server(lessons_dirs=(tmp_path,))
    ids = [x["id"] for x in httpx.get(f"{srv.url}/api/lessons", timeout=30).json()]
    assert "tiny" in ids and "sigmoid-depth" in ids
    body = httpx.get(f"{srv.url}/api/lessons/tiny", timeout=30).json()
    assert body["question"] == {"prompt": "p", "choices": ["x", "y"]} and body["config"]["depth"] == 2
    assert httpx.get(f"{srv.url}/lessons/tiny", timeout=30).status_code == 200  # the shareable page


def test_serve_refuses_a_broken_lesson_file_naming_it(tmp_path):
    from test_cli import gradscope

    (tmp_path / "oops.json").write_text(json.dumps({**MINIMAL, "id": "oops", "look": "nowhere"}))
    proc = gradscope("serve", "--lessons", str(tmp_path), "--port", "1", tmp_path=tmp_path)
    assert proc.returncode == 2 and "oops.json" in proc.stderr and "look" in proc.stderr

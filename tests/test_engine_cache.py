"""The compile cache is bounded (issue 17: a server meeting hundreds of shapes died of memory):
least recently used executables go first, an evicted one is really freed, and a trainer whose
executable went compiles it again and trains on exactly as before."""
from __future__ import annotations

import gc
import threading
import weakref

import numpy as np

from gradscope.engine import CompileCache, Trainer, describe_key

SMALL = {"depth": 1, "width": 2, "batch_size": 2, "dataset": "xor"}


def shapes(n):
    return [{**SMALL, "width": 2 + i} for i in range(n)]


def test_the_cache_never_holds_more_than_its_bound_and_frees_what_it_drops():
    cache = CompileCache(background=False, max_entries=3)
    seen = []
    first = Trainer(shapes(1)[0], chunk_steps=4, cache=cache)
    first.run(4)
    exe = weakref.ref(cache.built(first._key(first.config.activation, first.config.optimizer)))
    del first
    for config in shapes(7)[1:]:
        Trainer(config, chunk_steps=4, cache=cache).run(4)
        seen.append(cache.stats())
    assert all(s["entries"] <= 3 for s in seen), seen
    assert seen[-1]["evictions"] >= 3 and seen[-1]["compiles"] >= 7, seen[-1]
    gc.collect()
    assert exe() is None  # nothing else kept the first shape's executable alive


def test_a_byte_bound_evicts_too():
    cache = CompileCache(background=False, max_entries=100, max_bytes=1)  # every executable is over it
    for config in shapes(3):
        Trainer(config, chunk_steps=4, cache=cache).run(4)
        assert cache.stats()["entries"] == 1  # the newest stays, however big


def test_a_trainer_whose_executable_was_evicted_compiles_it_again_and_trains_the_same():
    reference = Trainer(SMALL, chunk_steps=4, cache=CompileCache(background=False))
    expected = reference.run(12)["loss"]
    cache = CompileCache(background=False, max_entries=1)
    tr = Trainer(SMALL, chunk_steps=4, cache=cache)
    got = [tr.run(4)["loss"]]
    Trainer({**SMALL, "width": 7}, chunk_steps=4, cache=cache).run(4)  # pushes tr's executable out
    assert tr._cache.built(tr._key(tr.config.activation, tr.config.optimizer)) is None
    got += [tr.run(4)["loss"], tr.run(4)["loss"]]
    np.testing.assert_array_equal(np.concatenate(got), expected)


def test_waiting_for_a_compile_is_told_start_then_end_naming_it():
    told = []
    tr = Trainer({**SMALL, "activation": "tanh"}, chunk_steps=4, cache=CompileCache(background=False),
                 on_compile=lambda what, state, seconds: told.append((what, state, seconds)))
    tr.run(4)
    assert [t[:2] for t in told] == [(f"tanh, {tr.config.optimizer}, depth 1 x width 2", "start"),
                                     (f"tanh, {tr.config.optimizer}, depth 1 x width 2", "end")]
    assert told[0][2] is None and told[1][2] > 0
    told.clear()
    tr.run(4)  # built: nothing to wait for
    assert told == []
    tr.update({"activation": "relu"})
    tr.run(4)
    assert [t[1] for t in told] == ["start", "end"] and told[0][0].startswith("relu")


def test_describe_key_reads_as_a_person_would():
    tr = Trainer(SMALL, chunk_steps=4, cache=CompileCache(background=False))
    assert describe_key(tr._predict_key("relu")) == "the decision boundary (relu)"
    assert describe_key(tr._key("gelu", "adam")) == "gelu, adam, depth 1 x width 2"
    rnn = Trainer({"model": "lstm", "dataset": "adding", "seq_len": 3, "depth": 1, "width": 2, "batch_size": 2},
                  chunk_steps=4, cache=CompileCache(background=False))
    assert describe_key(rnn._key("tanh", "sgd")).startswith("lstm ")


def test_concurrent_gets_of_one_key_compile_it_once():
    cache = CompileCache(background=False, max_entries=2)
    tr = Trainer(SMALL, chunk_steps=4, cache=cache)
    key, args = tr._key("elu", tr.config.optimizer), tr._args(0)
    before = cache.stats()["compiles"]
    out = []
    threads = [threading.Thread(target=lambda: out.append(cache.get(key, args))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(x) for x in out}) == 1 and cache.stats()["compiles"] == before + 1

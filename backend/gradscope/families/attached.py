"""Attached runs: the user's own training loop, watched through `gradscope.attach` (issue 21).

The family trains nothing here (`trains_here` is False): its rows are the records a script
posts (`gradscope.optax.monitor` packs them inside the user's jitted step, `Run.publish` sends
them). What the family owns is what every family owns for the rest of the product: the config
(the run's name, its layer and probe names, and the knobs the script exposes, which are the
only keys a page may change), the statistics with their axes, and the views.

The server's session takes rows from a `Feed` (server/feed.py) instead of a Trainer; the
engine and the CLI refuse to train the model, by name.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from gradscope.errors import ConfigError

from .base import Model, ModelFamily, Stat

MAX_LAYERS = 1024  # layer rows a script may publish (a 1,000-layer net profiles; more is not a profile)
MAX_PROBES = 64    # probed activations (each costs the script a host callback a step)
KNOBS = ("learning_rate", "clip_value")  # the knobs a script can expose (gradscope.optax.KNOBS)
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]

# The records' statistics: gradscope.optax's LAYER_STATS and GLOBAL_STATS (a test keeps them equal),
# the probes' deltas, and the loss and accuracy the script passes to publish.
LAYER = ("grad_norm", "clipped_grad_norm", "weight_norm", "update_norm", "update_ratio", "nonfinite_count")
GLOBAL = ("global_grad_norm", "clipped_global_grad_norm", "clip_fraction")
METRICS = ("loss", "accuracy")


class AttachedFamily(ModelFamily):
    name = "attached"
    trains_here = False
    models = (Model("attached", "attached run", datasets=(), initializers=(), activations=()),)
    common_keys_not_taken = ("dataset", "depth", "width", "batch_size", "init", "init_gain", "seed", "activation",
                             "leaky_alpha", "clip_mode", "optimizer", "l1", "l2")
    config_fields = {
        "run_name": (Name, "run"),
        "layers": (tuple[Name, ...], Field((), max_length=MAX_LAYERS)),
        "probes": (tuple[Name, ...], Field((), max_length=MAX_PROBES)),
        "knobs": (tuple[Literal[KNOBS], ...], Field((), max_length=len(KNOBS))),
    }
    count_keys = ("layers",)
    depth_range = (0, MAX_LAYERS)
    default_depth = 0
    rule_keys = ("knobs",)
    loss_stat = "loss"
    per_step_stats = ("loss", "accuracy")
    sparse_stats = ()
    stats = (
        *(Stat(name, ("layer",), about) for name, about in (
            ("grad_norm", "||dL/dθ|| over the layer's parameters, before clipping"),
            ("clipped_grad_norm", "the same after the script's clipping"),
            ("weight_norm", "||θ||"), ("update_norm", "||Δθ|| as applied"),
            ("update_ratio", "||Δθ|| / ||θ||"), ("nonfinite_count", "non-finite gradient entries"))),
        Stat("delta_norm", ("probe",), "||dL/dz|| at each gradscope.probe, in forward order"),
        Stat("global_grad_norm"), Stat("clipped_global_grad_norm"), Stat("clip_fraction"),
        Stat("nonfinite", (), "any non-finite gradient entry"),
        Stat("loss"), Stat("accuracy"),
    )
    # what the page shows: the layer views along the script's own layer names; the controls only
    # for the knobs the script exposes (`knobs`), the others greyed with the reason
    views = {"axis": "layer", "diagnosis": "layers", "menu": False,
             "layer_names": "layers", "probe_names": "probes", "exposed": "knobs",
             "not_exposed": "the script does not expose it (in JAX, gradscope.optax.monitor exposes the learning"
                            " rate, and the clip threshold when given clip=; a PyTorch watch, the learning rate)"}

    def rules(self, c):
        if len(set(c.layers)) != len(c.layers):
            yield ConfigError("layers", "layer names must differ from one another")
        if len(set(c.probes)) != len(c.probes):
            yield ConfigError("probes", "probe names must differ from one another")
        if len(set(c.knobs)) != len(c.knobs):
            yield ConfigError("knobs", "a knob is listed twice", list(KNOBS))

    def activation_count(self, c):
        return 0, "layers", "an attached run's activations (its script holds them)"

    def axis_sizes(self, c):
        return {"layer": len(c.layers), "probe": len(c.probes)}

    def columns(self, c):
        return {"layers": list(c.layers), "probes": list(c.probes)}


FAMILY = AttachedFamily()

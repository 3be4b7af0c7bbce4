"""The model families, chosen once from `config.model`: `family_of(model)` is the only place a
model's name picks code. Adding a family is one module here and one line in FAMILIES
(docs/adding-a-model.md)."""
from __future__ import annotations

from .attached import FAMILY as ATTACHED
from .base import Model, ModelFamily, Stat
from .cnn import FAMILY as CNN
from .gan import FAMILY as GAN
from .mlp import FAMILY as MLP
from .recurrent import FAMILY as RECURRENT

FAMILIES: tuple[ModelFamily, ...] = (MLP, RECURRENT, CNN, GAN, ATTACHED)
MODELS: dict[str, Model] = {m.name: m for f in FAMILIES for m in f.models}  # in menu order, the MLP first
_FAMILY_OF = {m.name: f for f in FAMILIES for m in f.models}


def family_of(model: str) -> ModelFamily:
    """The family that trains `model` (a name the config has validated)."""
    return _FAMILY_OF[model]


__all__ = ["FAMILIES", "MODELS", "Model", "ModelFamily", "Stat", "family_of"]

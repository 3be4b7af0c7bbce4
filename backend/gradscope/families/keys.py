"""Config keys that more than one family takes, defined once: a family's `config_fields` names
the ones it takes (with its own keys beside them), and the config builds the family's class from
them. A key's bounds live on its field, so `/api/meta` and the errors come from it."""
from __future__ import annotations

from pydantic import Field

NOISE = (float, Field(0.1, ge=0.0, le=2.0))
INPUT_DIM = (int, Field(2, ge=2, le=64))
BATCHNORM = (bool, False)
RESIDUAL = (bool, False)
DROPOUT = (float, Field(0.0, ge=0.0, le=0.9))

# the MLP's and the CNN's layer knobs (live)
LAYER_KNOBS = {"batchnorm": BATCHNORM, "residual": RESIDUAL, "dropout": DROPOUT}

"""`gradscope.torch.watch`: the per-layer statistics of a PyTorch training loop, and the page's
learning rate reaching back into its optimizer.

    gs = gradscope.attach("my run", server="http://localhost:8000")
    gradscope.torch.watch(model, optimizer, gs)          # 1
    for step, (x, y) in enumerate(batches):
        loss = loss_fn(model(x), y)
        optimizer.zero_grad(); loss.backward(); optimizer.step()
        gs.publish(step, loss=loss)                      # 2

`gradscope.torch.probe(z, "fc3")` inside the model records dL/dz there (`delta_norm`).

The statistics are `gradscope.optax.monitor`'s, in its packed layout, so that the recorder, the
file, the server and the page treat a PyTorch run as they treat a JAX one:

- a layer is a module with parameters of its own (`model.named_modules()`'s names: `0`, `fc1`,
  `blocks.3.conv`), its parameters counted together;
- `grad_norm` is read by a post-accumulate-grad hook on every parameter, when backward has
  accumulated its gradient: before any clipping the loop does between `backward` and `step`
  (`torch.nn.utils.clip_grad_norm_`); `clipped_grad_norm` is read just before `optimizer.step`,
  after it; `weight_norm`, `update_norm` (||θ after − θ before||) and `update_ratio` around the
  step (the optimizer's pre- and post-step hooks), and `nonfinite_count` per layer (the entries
  of the parameters whose gradient is not finite: which layers is exact, the count an upper bound);
- every number stays on the parameters' device, in one tensor per step, until the recorder's
  background thread fetches it.

Install with `pip install gradscope[torch]`. This module imports torch and, of gradscope, only
the recorder (an import contract keeps it so).
"""
from __future__ import annotations

import functools
import math

import torch

from .monitoring import Run, note_probe, record_probe

_EPS = 1e-12


class Watch:
    """The hooks on one model and its optimizer, feeding one `Run` (`watch` makes it)."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, run: Run, every: int = 1):
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every: {every!r} must be an int >= 1 (measure every Nth step)")
        groups = []
        for name, module in model.named_modules():
            params = [p for p in module.parameters(recurse=False) if p.requires_grad]
            if params:
                groups.append((name or type(model).__name__, params))
        if not groups:
            raise ValueError("the model has no parameters that require a gradient: nothing to watch")
        watched = {id(p) for g in optimizer.param_groups for p in g["params"]}
        missing = [name for name, params in groups if not any(id(p) in watched for p in params)]
        if missing:
            raise ValueError(f"the optimizer does not update {', '.join(missing)}: pass the optimizer of this model")
        self.model, self.optimizer, self.run, self.every = model, optimizer, run, every
        self.layers = [name for name, _ in groups]
        self._params = [params for _, params in groups]
        flat = [p for params in self._params for p in params]
        device = flat[0].device
        self._flat = flat
        self._layer_of = torch.tensor([i for i, params in enumerate(self._params) for _ in params], device=device)
        self._numel = torch.tensor([float(p.numel()) for p in flat], device=device)
        self._zero = torch.zeros((), device=device)
        self._raw = [self._zero] * len(flat)  # per parameter: ||grad|| as its hook saw it (before clipping)
        self._clipped = None
        self._before = None  # buffers: the weights before the step
        self._pending_update = False
        self._packed = None
        self.updates = 0  # optimizer steps taken since watch
        self._handles = [p.register_post_accumulate_grad_hook(functools.partial(self._on_grad, j))
                         for j, p in enumerate(flat)]
        self._handles += [optimizer.register_step_pre_hook(self._pre_step),
                          optimizer.register_step_post_hook(self._post_step)]
        run.source = self

    # -- the hooks (the training thread) ---------------------------------------------------
    # One norm per parameter in its hook; the rest in a few fused (torch._foreach_*) calls around
    # the step: a dozen small ops per parameter cost more than an MLP's step on a CPU.
    def _measuring(self) -> bool:
        return self.updates % self.every == 0

    @torch.no_grad()
    def _on_grad(self, j: int, p: torch.Tensor) -> None:
        """After backward accumulated p's gradient (again on each accumulation: the last one counts)."""
        if self._measuring():
            self._raw[j] = torch.linalg.vector_norm(p.grad.detach(), dtype=torch.float32)

    def _per_layer(self, values: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(self.layers), device=values.device).index_add_(0, self._layer_of, values)

    @torch.no_grad()
    def _pre_step(self, optimizer, args, kwargs) -> None:
        if not self._measuring():
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self._flat]
        self._clipped = torch._foreach_norm(grads)
        flat = [p.detach() for p in self._flat]
        if self._before is None:  # the buffers for the weights before the step, made once
            self._before = [torch.empty_like(p) for p in flat]
        torch._foreach_copy_(self._before, flat)
        self._pending_update = True

    @torch.no_grad()
    def _post_step(self, optimizer, args, kwargs) -> None:
        if self._measuring() and getattr(self, "_pending_update", False):
            flat = [p.detach() for p in self._flat]
            torch._foreach_sub_(self._before, flat)  # now -(the update), in place
            raw = torch.stack(self._raw)
            per_param = torch.stack([raw, torch.stack(self._clipped).float(), torch.stack(torch._foreach_norm(flat)).float(),
                                     torch.stack(torch._foreach_norm(self._before)).float()])
            grad, clipped, weight, update = torch.zeros(4, len(self.layers), device=raw.device).index_add_(
                1, self._layer_of, per_param.square()).sqrt()
            # a parameter whose gradient norm is not finite counts all its entries: which layers is exact,
            # the count an upper bound (an exact count would cost a pass per parameter, or a device sync)
            bad = self._per_layer(torch.where(torch.isfinite(raw), 0.0, self._numel))
            g_all, c_all = grad.square().sum().sqrt(), clipped.square().sum().sqrt()
            step = torch.tensor(float(self.updates), device=raw.device)
            glob = torch.stack([g_all, c_all, (bad.sum() > 0).float(), 1.0 - c_all / (g_all + _EPS), step])
            # gradscope.optax's layout: LAYER_STATS rows of a value per layer, then GLOBAL_STATS
            self._packed = torch.cat([grad, clipped, weight, update, update / (weight + _EPS), bad, glob])
            self._raw = [self._zero] * len(self._flat)
            self._pending_update = False
        self.updates += 1

    # -- what the recorder asks (Run.source) -------------------------------------------------
    def packed(self) -> torch.Tensor | None:
        """The latest measured step's statistics, one tensor (still on the device)."""
        return self._packed

    def knobs(self) -> dict[str, float]:
        """The learning rate (of the first param group; a change sets every group's)."""
        lr = self.optimizer.param_groups[0].get("lr")
        lr = float(lr) if isinstance(lr, int | float | torch.Tensor) else math.nan
        return {"learning_rate": lr} if math.isfinite(lr) else {}

    def apply(self, changes: dict[str, float]) -> None:
        """The page's changes, between two steps: the learning rate of every param group."""
        for key in changes:
            if key != "learning_rate":
                raise ValueError(f"{key}: a watched PyTorch run exposes only learning_rate")
        for group in self.optimizer.param_groups:
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(changes["learning_rate"])
            else:
                group["lr"] = float(changes["learning_rate"])

    def remove(self) -> None:
        """Take the hooks off (the run keeps what it recorded)."""
        for h in self._handles:
            h.remove()
        self._handles = []
        if self.run.source is self:
            self.run.source = None


def watch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, run: Run, *, every: int = 1) -> Watch:
    """Watch `model` trained by `optimizer`: hooks measure every `every`-th step and `run.publish(step,
    loss=...)` after each `optimizer.step()` sends it; the page's learning rate reaches the optimizer
    at the next publish."""
    return Watch(model, optimizer, run, every)


def probe(z: torch.Tensor, name: str) -> torch.Tensor:
    """Identity on `z` (an activation, e.g. a layer's pre-activation); in the backward pass it
    records ||dL/dz|| (the Frobenius norm over the batch, as the built-in nets' `delta_norm`)
    under `name`, through a tensor hook, as `gradscope.probe` does in JAX. Name a probe as the
    layer that makes `z` (`"fc3"`) and the page draws its delta at that layer."""
    if z.requires_grad:
        note_probe(name)
        z.register_hook(functools.partial(_on_delta, name))
    return z


def _on_delta(name: str, grad: torch.Tensor) -> None:
    record_probe(name, torch.linalg.vector_norm(grad.detach(), dtype=torch.float32))


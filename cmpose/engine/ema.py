"""Exponential moving average of a model's weights (as timm's ``ModelEmaV2``, with the decay
warm-up of tf/mmcv's ``ExponentialMovingAverage``: ``min(decay, (1 + step) / (10 + step))``, so
the average is not dominated by the random initial weights early in training)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.nn.parallel import DataParallel, DistributedDataParallel


def _unwrap(model: nn.Module) -> nn.Module:
    """The module whose state names we keep: DDP/DP's ``.module``, torch.compile's original."""
    if isinstance(model, (DistributedDataParallel, DataParallel)):
        model = model.module
    return getattr(model, "_orig_mod", model)


class ModelEma:
    """A float32 copy of a model's state, updated as ``ema = d * ema + (1 - d) * param``.

    Parameters are averaged; buffers (BatchNorm running statistics, counters) are copied, as
    timm and mmcv do: an average of running statistics is not the statistics of the averaged
    weights, and integer buffers cannot be averaged.

    Args:
        model: the model to follow (a DDP/DP/compiled wrapper is unwrapped).
        decay: the decay after warm-up (typical: 0.9998 for ~100k steps).
        device: where the copy lives (None = with the model; "cpu" saves accelerator memory).
    """

    def __init__(
        self, model: nn.Module, decay: float = 0.9998, device: torch.device | str | None = None
    ) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must be in [0, 1], got {decay}")
        self.decay = decay
        self.device = None if device is None else torch.device(device)
        model = _unwrap(model)
        self.param_names = frozenset(name for name, _ in model.named_parameters())
        self.state: dict[str, Tensor] = {k: self._copy(v) for k, v in model.state_dict().items()}

    def _copy(self, value: Tensor) -> Tensor:
        value = value.detach().to(self.device) if self.device is not None else value.detach()
        return value.float().clone() if value.is_floating_point() else value.clone()

    def decay_at(self, step: int) -> float:
        """The decay used by ``update`` at optimizer step ``step`` (0-based)."""
        return min(self.decay, (1.0 + step) / (10.0 + step))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Move the average towards ``model``'s current weights (call after each optimizer step)."""
        d = self.decay_at(step)
        current = _unwrap(model).state_dict()
        self._check_keys(current.keys())
        for name, ema in self.state.items():
            value = current[name].detach().to(ema.device)
            if name in self.param_names and ema.is_floating_point():
                ema.lerp_(value.float(), 1.0 - d)  # ema + (1 - d) * (p - ema) = d * ema + (1 - d) * p
            else:
                ema.copy_(value)

    def state_dict(self) -> dict[str, Tensor]:
        """The averaged weights, keyed like the model's own state dict (loadable into the model).

        The values are the live float32 tensors (no copy); ``torch.save`` them, don't modify them.
        """
        return dict(self.state)

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore the average from ``state_dict()`` output (e.g. when resuming training)."""
        self._check_keys(state.keys())
        for name, ema in self.state.items():
            if state[name].shape != ema.shape:
                raise ValueError(
                    f"EMA state '{name}': shape {tuple(state[name].shape)}, expected {tuple(ema.shape)}"
                )
            ema.copy_(state[name])

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Write the averaged weights into ``model`` (cast to its dtypes and devices)."""
        model = _unwrap(model)
        self._check_keys(model.state_dict().keys())
        model.load_state_dict(self.state)

    @contextmanager
    def swapped(self, model: nn.Module) -> Iterator[nn.Module]:
        """Evaluate with the EMA weights: ``with ema.swapped(model): evaluate(model)``.

        The model's own weights are restored on exit, also when the body raises.
        """
        inner = _unwrap(model)
        backup = {k: v.detach().clone() for k, v in inner.state_dict().items()}
        self.copy_to(inner)
        try:
            yield model
        finally:
            inner.load_state_dict(backup)

    def _check_keys(self, keys: Iterable[str]) -> None:
        keys = set(keys)
        if keys != self.state.keys():
            missing, unexpected = sorted(self.state.keys() - keys), sorted(keys - self.state.keys())
            raise ValueError(
                f"EMA state does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )

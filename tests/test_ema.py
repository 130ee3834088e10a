"""EMA of model weights: the decay formula, buffer copying, swapping for evaluation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cmpose.engine.ema import ModelEma


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k].to(b[k].dtype), b[k]) for k in a)


def test_constant_model_is_its_own_average() -> None:
    model = _model()
    ema = ModelEma(model, decay=0.99)
    for step in range(20):
        ema.update(model, step)
    assert _equal(ema.state_dict(), model.state_dict())


def test_one_update_by_hand() -> None:
    model = _model()
    ema = ModelEma(model, decay=0.9)
    old = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    model[1].running_mean.fill_(5.0)
    model[1].num_batches_tracked.fill_(7)

    assert ema.decay_at(0) == pytest.approx(0.1)  # (1 + 0) / (10 + 0) < 0.9
    assert ema.decay_at(100) == 0.9  # 101 / 110 > 0.9
    ema.update(model, step=0)  # d = 0.1: ema = 0.1 * old + 0.9 * new = old + 0.9
    state = ema.state_dict()
    for name in ["0.weight", "0.bias", "1.weight", "1.bias"]:
        torch.testing.assert_close(state[name], old[name] + 0.9)
    # Buffers are copied, not averaged.
    assert torch.equal(state["1.running_mean"], torch.full((4,), 5.0))
    assert int(state["1.num_batches_tracked"]) == 7 and state["1.num_batches_tracked"].dtype == torch.long

    ema.update(model, step=100)  # d = 0.9: ema = 0.9 * (old + 0.9) + 0.1 * (old + 1)
    torch.testing.assert_close(ema.state_dict()["0.weight"], old["0.weight"] + 0.91)


def test_float32_copy_of_a_half_model() -> None:
    model = _model().to(torch.bfloat16)
    ema = ModelEma(model)
    assert ema.state_dict()["0.weight"].dtype == torch.float32
    ema.update(model, 0)
    ema.copy_to(model)
    assert model[0].weight.dtype == torch.bfloat16


def test_swapped_restores_weights() -> None:
    model = _model()
    ema = ModelEma(model, decay=0.5)
    own = {k: v.clone() for k, v in model.state_dict().items()}
    ema.load_state_dict({k: v + 3.0 if v.is_floating_point() else v for k, v in own.items()})
    assert not _equal(ema.state_dict(), own)
    with ema.swapped(model) as m:
        assert m is model
        assert _equal(model.state_dict(), ema.state_dict())
    assert _equal(model.state_dict(), own)
    with pytest.raises(RuntimeError), ema.swapped(model):
        raise RuntimeError("evaluation failed")
    assert _equal(model.state_dict(), own)


def test_checkpoint_round_trip_and_wrappers() -> None:
    model = _model()
    ema = ModelEma(nn.DataParallel(model), decay=0.9)  # wrapper unwrapped: keys without "module."
    assert set(ema.state_dict()) == set(model.state_dict())
    with torch.no_grad():
        model[0].weight.mul_(2.0)
    ema.update(nn.DataParallel(model), step=3)

    other = ModelEma(_model(), decay=0.9)
    other.load_state_dict(ema.state_dict())
    assert _equal(other.state_dict(), ema.state_dict())
    fresh = _model()
    fresh.load_state_dict(ema.state_dict())  # the EMA state loads straight into a model
    assert _equal(fresh.state_dict(), ema.state_dict())

    with pytest.raises(ValueError, match="missing"):
        other.load_state_dict({"0.weight": torch.zeros(4, 3)})
    with pytest.raises(ValueError, match="shape"):
        other.load_state_dict({**ema.state_dict(), "0.weight": torch.zeros(2, 2)})
    with pytest.raises(ValueError):
        ema.update(nn.Linear(3, 4), step=0)

"""Tests for the auxiliary-term balance (cmpose.models.balance)."""

from __future__ import annotations

import pytest
import torch

from cmpose.models.balance import Balancer, grad_norm_at


def _graph(seed: int = 0) -> tuple[torch.nn.Linear, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A shared layer feeding a tiny 'pose' head and a steep 'auxiliary' head, like CM-Pose."""
    g = torch.Generator().manual_seed(seed)
    shared = torch.nn.Linear(6, 6)
    x = torch.randn(4, 6, generator=g)
    rep = shared(x)  # what both heads read
    pose = (rep * 1e-3).pow(2).mean()  # small gradient, as behind ViTPose's std-0.001 head
    aux = (rep * 30.0 - 1.0).pow(2).mean()  # steep, as a token regression
    return shared, x, rep, pose, aux


def _norm(loss: torch.Tensor, rep: torch.Tensor) -> float:
    (g,) = torch.autograd.grad(loss, rep, retain_graph=True)
    return g.norm().item()


def test_gradient_mode_matches_the_pose_pull_at_the_representation() -> None:
    shared, _, rep, pose, aux = _graph()
    assert _norm(aux, rep) > 1e6 * _norm(pose, rep)
    out = Balancer("gradient", pose, rep)(aux, rep)
    assert _norm(out, rep) == pytest.approx(_norm(pose, rep), rel=1e-5)
    # The direction is the term's own; the factor carries no gradient.
    (a,) = torch.autograd.grad(aux, rep, retain_graph=True)
    (b,) = torch.autograd.grad(out, rep, retain_graph=True)
    cos = torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0)
    assert cos.item() == pytest.approx(1.0, abs=1e-6)
    # Measuring left the shared layer's parameter gradients alone.
    assert shared.weight.grad is None


def test_gradient_mode_weight_scales_the_pull_and_params_see_the_balance() -> None:
    shared, _, rep, pose, aux = _graph(1)
    lam = 0.5
    total_aux = lam * Balancer("gradient", pose, rep)(aux, rep)
    (gp,) = torch.autograd.grad(pose, shared.weight, retain_graph=True)
    (ga,) = torch.autograd.grad(total_aux, shared.weight, retain_graph=True)
    # One linear layer: the parameter gradient is rep-gradient x input, so the shares carry over
    # up to the directions; here the auxiliary pull stays below the pose pull.
    assert ga.norm() < gp.norm() * 1.0 + 1e-12
    assert ga.norm() > 0


def test_loss_mode_takes_the_pose_value() -> None:
    _, _, rep, pose, aux = _graph()
    out = Balancer("loss", pose, rep)(aux, rep)
    assert out.item() == pytest.approx(pose.item(), rel=1e-6)


def test_none_mode_is_the_raw_term() -> None:
    _, _, rep, pose, aux = _graph()
    assert Balancer("none", pose, rep)(aux, rep) is aux


def test_without_autograd_gradient_mode_falls_back_to_the_loss_ratio() -> None:
    with torch.no_grad():
        _, _, rep, pose, aux = _graph()
        assert grad_norm_at(pose, rep) is None
        out = Balancer("gradient", pose, rep)(aux, rep)
    assert out.item() == pytest.approx(pose.item(), rel=1e-6)


def test_a_term_without_gradient_gets_weight_zero() -> None:
    _, _, rep, pose, _ = _graph()
    dead = (rep * 0.0).sum() + 3.0
    out = Balancer("gradient", pose, rep)(dead, rep)
    assert out.item() == 0.0


def test_unknown_mode_is_refused() -> None:
    _, _, rep, pose, _ = _graph()
    with pytest.raises(ValueError, match="balance mode"):
        Balancer("grad", pose, rep)  # type: ignore[arg-type]

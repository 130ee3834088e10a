"""Putting the auxiliary loss terms on the scale of the main pose term.

CM-Pose trains the pose prediction with auxiliary terms (the keypoint tokens' heatmaps, masked and
denoised token reconstruction) that share the encoder and the backbone with it. Their raw scales
are unrelated: under ViTPose's MSE the pose loss is about 1e-3 and, behind a head initialised with
std 0.001, its gradient at the tokens is about 1e-4 of a token regression's. With fixed weights
the shared layers then learn the auxiliary tasks, not the pose (docs/training.md, "Loss scales").

Each auxiliary term is multiplied by a detached factor, so only the balance changes, never the
direction of a term's gradient:

- ``gradient`` (default): the factor makes the term's gradient at the tensor its own head reads
  (its "representation": the keypoint tokens, the corrupted branch's tokens) as large as the main
  term's gradient at the tokens the heatmap head reads; the term's weight lambda then means
  "lambda x the pose term's pull on the shared layers", for every loss kind and at every point of
  training (GradNorm's idea, measured at the representation, in closed form, with no learned weights).
  It costs one extra backward pass through each small head (autograd.grad, which leaves parameter
  gradients alone) and is a graph break for torch.compile.
- ``loss``: the factor makes the term's value equal to the main term's (loss-ratio balancing).
  Cheap, but the gradient per unit of loss differs between terms, so it does not bound the pull.
- ``none``: the raw term (the behaviour before balancing; for ablations).

Parameters that only one term reaches (a decoder, the keypoint-token head) are unaffected in
practice: AdamW normalises each parameter's step by its own gradient scale.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

BalanceMode = Literal["gradient", "loss", "none"]
BALANCE_MODES: tuple[str, ...] = ("gradient", "loss", "none")


def grad_norm_at(loss: Tensor, rep: Tensor) -> Tensor | None:
    """The L2 norm of d loss / d rep (float32, detached), or None where autograd cannot give it
    (no grad mode, or ``rep`` / ``loss`` outside the graph). Parameter gradients are not touched."""
    if not (torch.is_grad_enabled() and rep.requires_grad and loss.requires_grad):
        return None
    (g,) = torch.autograd.grad(loss, rep, retain_graph=True, allow_unused=True)
    return loss.new_zeros((), dtype=torch.float32) if g is None else g.detach().float().norm()


class Balancer:
    """Scales auxiliary terms against one reference term (``BalanceMode``, module docstring).

    Args:
        mode: gradient / loss / none.
        reference_loss: the main pose term (scalar).
        reference_rep: the tensor the main term's head reads, e.g. the keyframe tokens (B, N, C).
    """

    def __init__(self, mode: BalanceMode, reference_loss: Tensor, reference_rep: Tensor) -> None:
        if mode not in BALANCE_MODES:
            raise ValueError(f"balance mode must be one of {BALANCE_MODES}, got {mode!r}")
        self.mode = mode
        self.reference_loss = reference_loss
        self.reference_rep = reference_rep
        self._reference_norm: Tensor | None = None
        self._reference_done = False

    def reference_norm(self) -> Tensor | None:
        """d reference_loss / d reference_rep's norm, computed once."""
        if not self._reference_done:
            self._reference_norm = grad_norm_at(self.reference_loss, self.reference_rep)
            self._reference_done = True
        return self._reference_norm

    def __call__(self, term: Tensor, rep: Tensor) -> Tensor:
        """``term`` (scalar) times a detached factor; ``rep`` is the tensor the term's head reads."""
        if self.mode == "none":
            return term
        if self.mode == "gradient":
            ref = self.reference_norm()
            own = grad_norm_at(term, rep) if ref is not None else None
            if ref is not None and own is not None:
                # A term with no gradient (e.g. no annotated joint in the batch) gets weight 0.
                factor = torch.where(own > 0, ref / own.clamp_min(1e-30), torch.zeros_like(own))
                return term * factor.to(term.dtype)
        # ``loss``, and ``gradient`` where autograd cannot measure (evaluation without grad).
        ratio = self.reference_loss.detach().float() / term.detach().float().clamp_min(1e-12)
        return term * ratio.to(term.dtype)

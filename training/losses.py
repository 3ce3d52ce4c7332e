"""Training losses on predicted landmark locations and scales.

Every loss is called as ``loss(mu, sigma, target, visible)`` with ``mu``, ``sigma``, ``target``
of shape (B, K, 2) in normalised coordinates and ``visible`` (B, K) weights in {0, 1}. Per-axis
terms are weighted by visibility, summed over landmarks and axes and divided by the batch size
(as in the reference code). Targets of invisible landmarks are never used (they may be 0, NaN
or anything), so they affect neither the loss nor any gradient.

Kinds:

- ``"nfdp"``: residual log-likelihood of NFDP / RLE, per landmark and axis
  ``log sigma - log phi(bar_mu) + log(sigma / a) + |r| / (sqrt(2) sigma + 1e-9)`` with
  ``r = mu - target``, ``bar_mu = r / sigma``, ``a = 1 / sqrt(2 pi)`` and ``phi`` the density of
  the shared 2-D flow (so ``log phi`` is counted once per axis, like the reference).
- ``"flow"``: the same without the residual Laplace term, ``log sigma - log phi(bar_mu)``.
- ``"l1"`` / ``"l2"``: plain ``|r|`` / ``r**2`` on ``mu``. ``sigma`` is trained at the same
  time by the Laplace / Gaussian negative log-likelihood of the detached residual, with
  ``sigma`` the per-axis standard deviation, so these baselines still yield a meaningful
  sigma while the gradient reaching ``mu`` is exactly that of the plain L1 / L2 loss.

The flow losses hold the flow as the submodule ``flow``: ``loss.parameters()`` are the flow's
parameters, to be optimised together with the network.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from training.flow import RealNVP

LOSS_KINDS: tuple[str, ...] = ("nfdp", "l1", "l2", "flow")

_SQRT2 = math.sqrt(2.0)
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


class LandmarkLoss(nn.Module):
    """Base class: checks shapes, masks invisible landmarks, reduces per-axis terms."""

    def forward(self, mu: Tensor, sigma: Tensor, target: Tensor, visible: Tensor) -> Tensor:
        """Scalar loss for a batch (see module docstring)."""
        if mu.ndim != 3 or mu.shape[-1] != 2:
            raise ValueError(f"mu must have shape (B, K, 2), got {tuple(mu.shape)}")
        if sigma.shape != mu.shape or target.shape != mu.shape:
            raise ValueError(
                f"mu, sigma and target must share a shape, got {tuple(mu.shape)}, "
                f"{tuple(sigma.shape)} and {tuple(target.shape)}"
            )
        if visible.shape != mu.shape[:2]:
            raise ValueError(f"visible must have shape (B, K) = {tuple(mu.shape[:2])}")
        weight = visible.to(mu.dtype).unsqueeze(-1)
        keep = weight > 0
        target = torch.where(keep, target, torch.zeros_like(target))
        residual = torch.where(keep, mu - target, torch.zeros_like(mu))
        return (self.per_axis(residual, sigma) * weight).sum() / mu.shape[0]

    def per_axis(self, residual: Tensor, sigma: Tensor) -> Tensor:
        """Per landmark and axis loss (B, K, 2) from ``mu - target`` (0 where invisible)."""
        raise NotImplementedError


class FlowLikelihoodLoss(LandmarkLoss):
    """NFDP residual log-likelihood (``residual_term=True``) or the bare flow NLL."""

    def __init__(self, flow: RealNVP, residual_term: bool = True) -> None:
        super().__init__()
        self.flow = flow
        self.residual_term = residual_term

    def per_axis(self, residual: Tensor, sigma: Tensor) -> Tensor:
        bar_mu = residual / sigma
        log_phi = self.flow.log_prob(bar_mu.reshape(-1, 2)).reshape(bar_mu.shape[:2])
        loss = torch.log(sigma) - log_phi.unsqueeze(-1)
        if self.residual_term:
            loss = loss + torch.log(sigma) + _LOG_SQRT_2PI
            loss = loss + residual.abs() / (_SQRT2 * sigma + 1e-9)
        return loss


class L1Loss(LandmarkLoss):
    """``|r|`` on mu plus the Laplace NLL (std ``sigma``) of the detached residual."""

    def per_axis(self, residual: Tensor, sigma: Tensor) -> Tensor:
        scale = sigma / _SQRT2
        nll = torch.log(2.0 * scale) + residual.detach().abs() / scale
        return residual.abs() + nll


class L2Loss(LandmarkLoss):
    """``r**2`` on mu plus the Gaussian NLL (std ``sigma``) of the detached residual."""

    def per_axis(self, residual: Tensor, sigma: Tensor) -> Tensor:
        nll = torch.log(sigma) + _LOG_SQRT_2PI + 0.5 * (residual.detach() / sigma) ** 2
        return residual**2 + nll


def make_loss(kind: str, flow: RealNVP | None = None) -> LandmarkLoss:
    """Build the loss ``kind`` (one of LOSS_KINDS).

    "nfdp" and "flow" need the shared flow; "l1" and "l2" ignore ``flow``.
    """
    if kind not in LOSS_KINDS:
        raise ValueError(f"unknown loss kind {kind!r}; choose one of {', '.join(LOSS_KINDS)}")
    if kind in ("nfdp", "flow"):
        if flow is None:
            raise ValueError(f"loss kind {kind!r} needs a flow (RealNVP), got None")
        return FlowLikelihoodLoss(flow, residual_term=kind == "nfdp")
    return L1Loss() if kind == "l1" else L2Loss()

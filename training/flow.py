"""RealNVP normalizing flow on 2-D points: the learned residual prior of NFDP.

The flow maps a latent z ~ N(0, I_2) to a data point x through ``n_couplings`` affine
coupling layers with alternating masks [0, 1], [1, 0]. In each layer the masked coordinate
passes through unchanged and conditions a scale ``s`` (bounded by Tanh) and a translation
``t`` applied to the other coordinate: x_free = z_free * exp(s) + t.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

_LOG_2PI = math.log(2.0 * math.pi)


def _coupling_net(hidden: int, bounded: bool) -> nn.Sequential:
    """Small MLP 2 -> hidden -> hidden -> 2; with a final Tanh when ``bounded``."""
    layers: list[nn.Module] = [
        nn.Linear(2, hidden),
        nn.LeakyReLU(),
        nn.Linear(hidden, hidden),
        nn.LeakyReLU(),
        nn.Linear(hidden, 2),
    ]
    if bounded:
        layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class RealNVP(nn.Module):
    """2-D RealNVP with a standard normal prior.

    Linear weights start Xavier-uniform with gain 0.01 (biases zero), so a fresh flow is
    almost the identity and its density is close to N(0, I).
    """

    def __init__(self, hidden: int = 64, n_couplings: int = 6) -> None:
        super().__init__()
        if hidden < 1 or n_couplings < 1:
            raise ValueError("hidden and n_couplings must be positive")
        masks = torch.tensor([[0.0, 1.0], [1.0, 0.0]]).repeat(n_couplings, 1)[:n_couplings]
        self.register_buffer("masks", masks, persistent=False)
        self.scale_nets = nn.ModuleList(_coupling_net(hidden, True) for _ in range(n_couplings))
        self.shift_nets = nn.ModuleList(_coupling_net(hidden, False) for _ in range(n_couplings))
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight, gain=0.01)
                nn.init.zeros_(module.bias)

    @property
    def n_couplings(self) -> int:
        """Number of affine coupling layers."""
        return len(self.scale_nets)

    def _coupling(self, i: int, y: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Layer ``i`` on y: (free-coordinate mask, kept part of y, scale, shift)."""
        mask = self.masks[i]
        kept = y * mask
        free = 1.0 - mask
        return free, kept, self.scale_nets[i](kept) * free, self.shift_nets[i](kept) * free

    def forward_and_logdet(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Map latent points z (N, 2) to data points x; also log|det dx/dz| (N,)."""
        x = z
        log_det = z.new_zeros(z.shape[0])
        for i in range(self.n_couplings):
            free, kept, s, t = self._coupling(i, x)
            x = kept + free * (x * torch.exp(s) + t)
            log_det = log_det + s.sum(dim=1)
        return x, log_det

    def inverse_and_logdet(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Map data points x (N, 2) to latent points z; also log|det dz/dx| (N,)."""
        z = x
        log_det = x.new_zeros(x.shape[0])
        for i in reversed(range(self.n_couplings)):
            free, kept, s, t = self._coupling(i, z)
            z = kept + free * ((z - t) * torch.exp(-s))
            log_det = log_det - s.sum(dim=1)
        return z, log_det

    def log_prob(self, x: Tensor) -> Tensor:
        """Log density of points x (N, 2) under the flow, shape (N,)."""
        if x.ndim != 2 or x.shape[1] != 2:
            raise ValueError(f"expected points of shape (N, 2), got {tuple(x.shape)}")
        z, log_det = self.inverse_and_logdet(x)
        return -0.5 * (z * z).sum(dim=1) - _LOG_2PI + log_det

    def forward(self, x: Tensor) -> Tensor:
        """Same as :meth:`log_prob`."""
        return self.log_prob(x)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``n`` points (n, 2) from the flow."""
        weight = self.scale_nets[0][0].weight
        z = torch.randn(n, 2, generator=generator, device=weight.device, dtype=weight.dtype)
        return self.forward_and_logdet(z)[0]

"""Tests of the NFDP residual log-likelihood and the baseline losses."""

import math

import pytest
import torch
from torch import nn

from training.flow import RealNVP
from training.losses import LOSS_KINDS, make_loss

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)

# The hand-computed checks read scalar values of tensors that are still part of a graph.
pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")


def _identity_flow() -> RealNVP:
    """A flow with all weights zero: s = t = 0, so its density is exactly N(0, I)."""
    flow = RealNVP()
    with torch.no_grad():
        for p in flow.parameters():
            p.zero_()
    return flow


def _random_flow(seed: int = 0) -> RealNVP:
    torch.manual_seed(seed)
    flow = RealNVP()
    with torch.no_grad():
        for p in flow.parameters():
            p.normal_(0.0, 0.3)
    return flow


def _loss_for(kind: str, seed: int = 0):
    return make_loss(kind, _random_flow(seed) if kind in ("nfdp", "flow") else None)


# One visible and one invisible landmark; the batch holds the same image twice, so the
# mean over the batch equals the single-image value.
MU = [[0.1, -0.2], [0.3, 0.0]]
SIGMA = [[0.05, 0.1], [0.2, 0.2]]
TARGET = [[0.12, -0.25], [float("nan"), float("nan")]]
VISIBLE = [1.0, 0.0]


def _tiny_case():
    mu = torch.tensor([MU, MU], dtype=torch.float64)
    sigma = torch.tensor([SIGMA, SIGMA], dtype=torch.float64)
    target = torch.tensor([TARGET, TARGET], dtype=torch.float64)
    visible = torch.tensor([VISIBLE, VISIBLE], dtype=torch.float64)
    return mu, sigma, target, visible


def _hand_log_phi_standard_normal(bar):
    return -0.5 * (bar[0] ** 2 + bar[1] ** 2) - math.log(2 * math.pi)


def _hand_residual():
    (m0, m1), (g0, g1) = MU[0], TARGET[0]
    return (m0 - g0, m1 - g1)


def test_nfdp_matches_hand_computation_with_standard_normal_flow():
    r = _hand_residual()
    s = SIGMA[0]
    bar = (r[0] / s[0], r[1] / s[1])
    log_phi = _hand_log_phi_standard_normal(bar)  # -0.5 * (0.16 + 0.25) - log(2 pi)
    a = 1 / math.sqrt(2 * math.pi)
    expected = sum(
        math.log(s[d]) - log_phi + math.log(s[d] / a) + abs(r[d]) / (math.sqrt(2) * s[d] + 1e-9)
        for d in range(2)
    )
    loss = make_loss("nfdp", _identity_flow().double())(*_tiny_case())
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-12)
    assert float(loss.detach()) == pytest.approx(-4.0366074, abs=1e-6)


def test_nfdp_uses_the_flow_density():
    flow = _random_flow(seed=2).double()
    r, s = _hand_residual(), SIGMA[0]
    bar = torch.tensor([[r[0] / s[0], r[1] / s[1]]], dtype=torch.float64)
    log_phi = float(flow.log_prob(bar)[0].detach())
    expected = sum(
        2 * math.log(s[d]) + LOG_SQRT_2PI - log_phi + abs(r[d]) / (math.sqrt(2) * s[d] + 1e-9)
        for d in range(2)
    )
    assert float(make_loss("nfdp", flow)(*_tiny_case()).detach()) == pytest.approx(
        expected, rel=1e-10
    )
    flow_only = sum(math.log(s[d]) - log_phi for d in range(2))
    assert float(make_loss("flow", flow)(*_tiny_case())) == pytest.approx(flow_only, rel=1e-10)


def test_l1_and_l2_match_hand_computation():
    r, s = _hand_residual(), SIGMA[0]
    l1 = sum(
        abs(r[d]) + math.log(math.sqrt(2) * s[d]) + math.sqrt(2) * abs(r[d]) / s[d]
        for d in range(2)
    )
    l2 = sum(
        r[d] ** 2 + math.log(s[d]) + LOG_SQRT_2PI + r[d] ** 2 / (2 * s[d] ** 2) for d in range(2)
    )
    assert float(make_loss("l1")(*_tiny_case())) == pytest.approx(l1, rel=1e-12)
    assert float(make_loss("l2")(*_tiny_case())) == pytest.approx(l2, rel=1e-12)


@pytest.mark.parametrize("kind", ["l1", "l2"])
def test_baselines_give_mu_the_plain_coordinate_gradient(kind):
    mu, sigma, target, visible = _tiny_case()
    mu.requires_grad_(True)
    sigma.requires_grad_(True)
    make_loss(kind)(mu, sigma, target, visible).backward()
    r = torch.tensor(_hand_residual(), dtype=torch.float64)
    plain = torch.sign(r) if kind == "l1" else 2 * r
    batch = mu.shape[0]
    assert torch.allclose(mu.grad[:, 0], (plain / batch).expand(2, 2))
    assert torch.all(mu.grad[:, 1] == 0)
    # sigma is trained too: zero gradient only at the maximum-likelihood scale
    assert torch.all(sigma.grad[:, 0] != 0) and torch.all(sigma.grad[:, 1] == 0)


def _random_batch(seed: int):
    gen = torch.Generator().manual_seed(seed)
    mu = torch.rand(3, 5, 2, generator=gen) - 0.5
    sigma = torch.rand(3, 5, 2, generator=gen) * 0.2 + 0.01
    target = mu + 0.05 * torch.randn(3, 5, 2, generator=gen)
    visible = torch.tensor([[1, 0, 1, 1, 0], [0, 0, 1, 1, 1], [1, 1, 1, 1, 0]], dtype=torch.float32)
    return mu, sigma, target, visible


def _loss_and_grads(loss_fn, mu, sigma, target, visible):
    mu = mu.clone().requires_grad_(True)
    sigma = sigma.clone().requires_grad_(True)
    loss_fn.zero_grad(set_to_none=True)
    loss = loss_fn(mu, sigma, target, visible)
    loss.backward()
    flow_grads = [p.grad.clone() for p in loss_fn.parameters()]
    return loss.detach(), mu.grad, sigma.grad, flow_grads


@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_invisible_landmarks_change_nothing(kind):
    loss_fn = _loss_for(kind)
    mu, sigma, target, visible = _random_batch(seed=1)
    hidden = visible == 0
    reference = _loss_and_grads(loss_fn, mu, sigma, target, visible)
    assert torch.isfinite(reference[0])
    assert torch.all(reference[1][hidden] == 0) and torch.all(reference[2][hidden] == 0)
    for fill in (0.0, float("nan"), float("inf"), -1e6):
        changed = target.clone()
        changed[hidden] = fill
        result = _loss_and_grads(loss_fn, mu, sigma, changed, visible)
        assert torch.equal(result[0], reference[0])
        assert torch.equal(result[1], reference[1]) and torch.equal(result[2], reference[2])
        assert all(torch.equal(a, b) for a, b in zip(result[3], reference[3], strict=True))


@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_gradients_are_finite(kind):
    loss_fn = _loss_for(kind)
    mu, sigma, target, visible = _random_batch(seed=2)
    target[visible == 0] = float("nan")
    loss, mu_grad, sigma_grad, flow_grads = _loss_and_grads(loss_fn, mu, sigma, target, visible)
    assert torch.isfinite(loss)
    assert torch.isfinite(mu_grad).all() and torch.isfinite(sigma_grad).all()
    assert all(torch.isfinite(g).all() for g in flow_grads)
    assert mu_grad.abs().sum() > 0 and sigma_grad.abs().sum() > 0
    if kind in ("nfdp", "flow"):
        assert sum(float(g.abs().sum()) for g in flow_grads) > 0


def test_visibility_weights_and_bool_masks():
    loss_fn = _loss_for("nfdp")
    mu, sigma, target, visible = _random_batch(seed=3)
    as_bool = loss_fn(mu, sigma, target, visible.bool())
    assert torch.equal(as_bool, loss_fn(mu, sigma, target, visible))
    nobody = loss_fn(mu, sigma, target, torch.zeros_like(visible))
    assert float(nobody) == 0.0


class _ToyRegressor(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mu = nn.Linear(3, 8)
        self.sigma = nn.Linear(3, 8)

    def forward(self, x):
        return self.mu(x).reshape(-1, 4, 2), torch.sigmoid(self.sigma(x)).reshape(-1, 4, 2)


@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_optimisation_decreases_the_loss(kind):
    torch.manual_seed(0)
    features = torch.randn(64, 3)
    target = (features @ (0.2 * torch.randn(3, 8))).reshape(-1, 4, 2)
    target = target + 0.01 * torch.randn_like(target)
    visible = (torch.rand(64, 4) > 0.2).float()
    target[visible == 0] = float("nan")
    model = _ToyRegressor()
    loss_fn = make_loss(kind, RealNVP() if kind in ("nfdp", "flow") else None)
    params = list(model.parameters()) + list(loss_fn.parameters())
    optimiser = torch.optim.Adam(params, lr=1e-2)

    def coordinate_error() -> float:
        with torch.no_grad():
            return float((model(features)[0] - target)[visible > 0].abs().mean())

    error_before, values = coordinate_error(), []
    for _ in range(40):
        loss = loss_fn(*model(features), target, visible)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        values.append(float(loss))
    assert all(math.isfinite(v) for v in values)
    assert values[-1] < values[0] - 5.0
    assert coordinate_error() < 0.5 * error_before


def test_flow_losses_own_the_flow():
    flow = RealNVP()
    for kind in ("nfdp", "flow"):
        loss_fn = make_loss(kind, flow)
        assert loss_fn.flow is flow
        assert {id(p) for p in loss_fn.parameters()} == {id(p) for p in flow.parameters()}
    assert list(make_loss("l1").parameters()) == []
    assert list(make_loss("l2", flow).parameters()) == []  # a flow is ignored by the baselines


def test_bad_arguments():
    with pytest.raises(ValueError, match="nfdp, l1, l2, flow"):
        make_loss("l3")
    for kind in ("nfdp", "flow"):
        with pytest.raises(ValueError, match="needs a flow"):
            make_loss(kind)
    loss_fn = make_loss("l1")
    mu, sigma, target, visible = _random_batch(seed=4)
    with pytest.raises(ValueError, match="visible"):
        loss_fn(mu, sigma, target, visible[:, :3])
    with pytest.raises(ValueError, match="share a shape"):
        loss_fn(mu, sigma[:, :3], target, visible)
    with pytest.raises(ValueError, match=r"\(B, K, 2\)"):
        loss_fn(mu[..., :1], sigma[..., :1], target[..., :1], visible)

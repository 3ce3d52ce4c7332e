"""Tests of the RealNVP flow prior: bijection, log-determinants, normalisation, sampling."""

import copy
import math

import pytest
import torch

from training.flow import RealNVP

GRID_HALF_WIDTH = 8.0
GRID_POINTS = 321


def _randomised_flow(seed: int = 0) -> RealNVP:
    """A float64 flow with large random weights, far from the near-identity initialisation."""
    torch.manual_seed(seed)
    flow = RealNVP().double()
    with torch.no_grad():
        for p in flow.parameters():
            p.normal_(0.0, 0.4)
    return flow


def _integral(flow: RealNVP) -> float:
    """Trapezoid integral of the flow density on [-8, 8]^2 (in float64, on a copy)."""
    axis = torch.linspace(-GRID_HALF_WIDTH, GRID_HALF_WIDTH, GRID_POINTS, dtype=torch.float64)
    rows, cols = torch.meshgrid(axis, axis, indexing="ij")
    points = torch.stack([rows.ravel(), cols.ravel()], dim=1)
    flow = copy.deepcopy(flow).double()
    with torch.no_grad():
        density = flow.log_prob(points).exp().reshape(GRID_POINTS, GRID_POINTS)
    return float(torch.trapezoid(torch.trapezoid(density, axis, dim=1), axis))


LAPLACE_LOC = (0.4, -0.3)
LAPLACE_SCALE = (0.6, 0.35)


@pytest.fixture(scope="module")
def trained_flow() -> RealNVP:
    """A flow fitted for 200 Adam steps to a shifted, anisotropic Laplace sample."""
    torch.manual_seed(1)
    target = torch.distributions.Laplace(torch.tensor(LAPLACE_LOC), torch.tensor(LAPLACE_SCALE))
    data = target.sample((4000,))
    flow = RealNVP()
    optimiser = torch.optim.Adam(flow.parameters(), lr=5e-3)
    for _ in range(200):
        batch = data[torch.randint(0, data.shape[0], (256,))]
        loss = -flow.log_prob(batch).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return flow.eval()


def test_default_structure():
    flow = RealNVP()
    assert flow.n_couplings == 6
    assert flow.masks.tolist() == [[0.0, 1.0], [1.0, 0.0]] * 3
    scale_net, shift_net = flow.scale_nets[0], flow.shift_nets[0]
    assert [type(m).__name__ for m in scale_net] == [
        "Linear",
        "LeakyReLU",
        "Linear",
        "LeakyReLU",
        "Linear",
        "Tanh",
    ]
    assert [type(m).__name__ for m in shift_net] == [type(m).__name__ for m in scale_net][:-1]
    assert scale_net[0].in_features == 2 and scale_net[0].out_features == 64
    assert scale_net[4].out_features == 2
    # masks are rebuilt from n_couplings, the state dict holds only the nets
    assert all(key.startswith(("scale_nets.", "shift_nets.")) for key in flow.state_dict())


def test_constructor_arguments():
    flow = RealNVP(hidden=8, n_couplings=3)
    assert flow.n_couplings == 3 and flow.scale_nets[0][0].out_features == 8
    with pytest.raises(ValueError):
        RealNVP(n_couplings=0)


def test_forward_inverse_roundtrip():
    flow = _randomised_flow()
    x = torch.randn(500, 2, dtype=torch.float64) * 3.0
    z, log_det_inv = flow.inverse_and_logdet(x)
    x_back, log_det_fwd = flow.forward_and_logdet(z)
    assert torch.allclose(x_back, x, atol=1e-5, rtol=0)
    assert torch.allclose(log_det_fwd, -log_det_inv, atol=1e-8)
    z_back, _ = flow.inverse_and_logdet(flow.forward_and_logdet(x)[0])
    assert torch.allclose(z_back, x, atol=1e-5, rtol=0)
    assert not torch.allclose(z, x, atol=1e-2)  # the randomised flow is far from the identity


def test_logdet_matches_autograd_jacobian():
    flow = _randomised_flow(seed=3)
    points = torch.randn(8, 2, dtype=torch.float64) * 2.0
    with torch.no_grad():
        _, log_det = flow.forward_and_logdet(points)
        _, log_det_inv = flow.inverse_and_logdet(points)
    for i, point in enumerate(points):

        def forward_map(p):
            return flow.forward_and_logdet(p.unsqueeze(0))[0].squeeze(0)

        def inverse_map(p):
            return flow.inverse_and_logdet(p.unsqueeze(0))[0].squeeze(0)

        jac = torch.autograd.functional.jacobian(forward_map, point)
        jac_inv = torch.autograd.functional.jacobian(inverse_map, point)
        assert float(log_det[i]) == pytest.approx(float(torch.linalg.det(jac).abs().log()))
        assert float(log_det_inv[i]) == pytest.approx(float(torch.linalg.det(jac_inv).abs().log()))


def test_log_prob_is_change_of_variables():
    flow = _randomised_flow(seed=4)
    x = torch.randn(50, 2, dtype=torch.float64)
    z, log_det = flow.inverse_and_logdet(x)
    prior = torch.distributions.MultivariateNormal(
        torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64)
    )
    assert torch.allclose(flow.log_prob(x), prior.log_prob(z) + log_det)
    assert torch.allclose(flow(x), flow.log_prob(x))
    with pytest.raises(ValueError):
        flow.log_prob(torch.zeros(4, 3, dtype=torch.float64))


def test_fresh_flow_is_close_to_standard_normal():
    torch.manual_seed(0)
    flow = RealNVP()
    x = torch.randn(100, 2)
    expected = -0.5 * (x * x).sum(dim=1) - math.log(2 * math.pi)
    assert torch.allclose(flow.log_prob(x), expected, atol=1e-3)


def test_fresh_flow_integrates_to_one():
    torch.manual_seed(0)
    assert _integral(RealNVP()) == pytest.approx(1.0, abs=1e-3)


def test_trained_flow_integrates_to_one(trained_flow):
    assert _integral(trained_flow) == pytest.approx(1.0, rel=0.02)


def test_trained_flow_fits_its_data(trained_flow):
    torch.manual_seed(2)
    target = torch.distributions.Laplace(torch.tensor(LAPLACE_LOC), torch.tensor(LAPLACE_SCALE))
    held_out = target.sample((2000,))
    with torch.no_grad():
        fitted = float(trained_flow.log_prob(held_out).mean())
        fresh = float(RealNVP().log_prob(held_out).mean())
    assert fitted > fresh + 0.5
    assert fitted > float(target.log_prob(held_out).sum(dim=1).mean()) - 0.15


def test_sample_shape_and_moments(trained_flow):
    samples = trained_flow.sample(20000, generator=torch.Generator().manual_seed(5))
    assert samples.shape == (20000, 2) and samples.dtype == torch.float32
    assert not samples.requires_grad
    mean, std = samples.mean(dim=0), samples.std(dim=0)
    expected_std = torch.tensor(LAPLACE_SCALE) * math.sqrt(2.0)
    assert torch.allclose(mean, torch.tensor(LAPLACE_LOC), atol=0.05)
    assert torch.allclose(std, expected_std, rtol=0.1)


def test_sample_is_reproducible_with_a_generator():
    flow = RealNVP()
    first = flow.sample(10, generator=torch.Generator().manual_seed(7))
    second = flow.sample(10, generator=torch.Generator().manual_seed(7))
    assert torch.equal(first, second)

"""A whole-spine shape prior for the structure step of the two-stage ablation (issue 13).

The prior is a point distribution model: spines aligned by similarity (Procrustes) to a mean
shape, principal components of what remains, and an isotropic residual. Given the located
landmarks with their sigma, :meth:`ShapePrior.reconcile` returns the posterior mean of the
Gaussian model (prior: the mean shape placed on the film by a sigma-weighted similarity fit,
covariance from the components; likelihood: each landmark's own sigma), so a point the model
is unsure of follows its neighbours and a sure one barely moves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


def _centred_unit(shape: np.ndarray) -> np.ndarray:
    centred = shape - shape.mean(axis=0)
    return centred / np.sqrt((centred**2).sum(axis=1).mean())


def similarity_fit(
    source: np.ndarray, target: np.ndarray, weight: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    """(scale, 2x2 rotation, translation) taking (K, 2) ``source`` onto ``target`` in the
    ``weight``-ed least-squares sense (weights (K,), >= 0)."""
    w = weight / weight.sum()
    mu_s, mu_t = w @ source, w @ target
    a, b = source - mu_s, target - mu_t
    cov = (b * w[:, None]).T @ a
    u, _, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(u @ vt))
    rotation = u @ np.diag([1.0, d]) @ vt
    scale = float(np.trace(rotation.T @ cov) / (w @ (a**2).sum(axis=1)))
    return scale, rotation, mu_t - scale * rotation @ mu_s


@dataclass
class ShapePrior:
    """Mean shape (K, 2) (centred, unit RMS radius), components (2K, m) with their variances
    (m,), and the residual variance per coordinate, all in the normalised frame."""

    mean: np.ndarray
    components: np.ndarray
    variances: np.ndarray
    residual: float

    @classmethod
    def fit(cls, shapes: np.ndarray, n_components: int = 12) -> ShapePrior:
        """Fit to (N, K, 2) complete shapes (generalised Procrustes, then PCA)."""
        shapes = np.asarray(shapes, dtype=np.float64)
        aligned = np.stack([_centred_unit(s) for s in shapes])
        mean = aligned[0]
        for _ in range(5):
            aligned = np.stack(
                [
                    s * fit[0] @ fit[1].T + fit[2]
                    for s, fit in ((s, similarity_fit(s, mean, np.ones(len(s)))) for s in aligned)
                ]
            )
            mean = _centred_unit(aligned.mean(axis=0))
        flat = (aligned - mean).reshape(len(shapes), -1)
        _, values, vt = np.linalg.svd(flat, full_matrices=False)
        variances = values**2 / max(1, len(shapes) - 1)
        m = min(n_components, len(variances))
        residual = float(variances[m:].sum() / max(1, flat.shape[1] - m))
        return cls(mean, vt[:m].T, variances[:m], max(residual, 1e-8))

    def to_dict(self) -> dict[str, Any]:
        """Plain lists for checkpoints."""
        return {
            "mean": self.mean.tolist(),
            "components": self.components.tolist(),
            "variances": self.variances.tolist(),
            "residual": self.residual,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShapePrior:
        """Inverse of :meth:`to_dict`."""
        return cls(
            np.asarray(data["mean"], dtype=np.float64),
            np.asarray(data["components"], dtype=np.float64),
            np.asarray(data["variances"], dtype=np.float64),
            float(data["residual"]),
        )

    def reconcile(
        self, points: np.ndarray, sigma: np.ndarray, use: np.ndarray, strength: float = 1.0
    ) -> np.ndarray:
        """Posterior mean (K, 2) of the landmarks given (K, 2) ``points`` with (K, 2) ``sigma``;
        only ``use``d points inform it (others are filled in from the shape). ``strength``
        scales the prior's confidence (0: the points unchanged)."""
        points = np.asarray(points, dtype=np.float64)
        use = np.asarray(use, dtype=bool) & np.isfinite(points).all(axis=1)
        if strength <= 0 or use.sum() < 3:
            return points.copy()
        scale_px = np.asarray(sigma, dtype=np.float64).mean(axis=1)
        scale, rotation, shift = similarity_fit(self.mean[use], points[use], 1 / scale_px[use] ** 2)
        placed = self.mean @ (scale * rotation).T + shift
        k = len(self.mean)
        turn = np.kron(np.eye(k), scale * rotation)  # normalised frame -> film, per landmark
        inner = (self.components * self.variances) @ self.components.T
        prior = turn @ (inner + self.residual * np.eye(2 * k)) @ turn.T / strength
        seen = np.repeat(use, 2)
        noise = np.diag((np.asarray(sigma, dtype=np.float64).reshape(-1)[seen]) ** 2)
        gap = (points - placed).reshape(-1)[seen]
        gain = np.linalg.solve(prior[np.ix_(seen, seen)] + noise, gap)
        return placed + (prior[:, seen] @ gain).reshape(k, 2)

"""Stage 2: per-vertebra corner refinement on patches cut around the stage-1 vertebrae.

For every vertebra whose four corners stage 1 places on the film, a square patch is cut from
the working image (the film block-reduced so its long side is at most ``max_side``, as the
training films are kept in memory), centred on the vertebra, rotated to its axis and scaled
to ``context`` times its size. A small network predicts the four corners in the patch with
their sigma (NFDP regression: mu in normalised patch coordinates ``p / P - 0.5``, sigma in the
same units); the corners go back to film pixels through the patch's affine. All patches of a
film are sampled in one batched ``grid_sample`` call and run through the network together.
"""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from napari_nfdp.core.preprocess import (
    PAD_VALUE,
    apply_affine,
    block_matrix,
    normalise_intensity,
    reduce_to_long_side,
    to_grey_float32,
)

CORNERS = 4
SIGMA_FLOOR = 1e-9
SIZE_RANGE = (0.5, 2.0)  # patch sizes are kept within this range of the film's median vertebra


@dataclass
class RefinerConfig:
    """What a stage-2 refiner is: patch side (px), context (patch side over vertebra size),
    working-image long side (px), network width (channels of its first stage) and passes
    (2: a cascade, the second pass cutting its patches around the first pass's corners)."""

    patch_size: int = 64
    context: float = 2.2
    max_side: int = 1024
    width: int = 32
    passes: int = 1

    def __post_init__(self) -> None:
        for name in ("patch_size", "max_side", "width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 16:
                raise ValueError(f"{name} must be an integer >= 16, got {value!r}")
            setattr(self, name, int(value))
        if isinstance(self.passes, bool) or self.passes not in (1, 2, 3):
            raise ValueError(f"passes must be 1, 2 or 3, got {self.passes!r}")
        if self.patch_size % 8:
            raise ValueError(f"patch_size must be a multiple of 8, got {self.patch_size}")
        if not isinstance(self.context, numbers.Real) or not 1.0 <= self.context <= 6.0:
            raise ValueError(f"context must be in [1, 6], got {self.context!r}")
        self.context = float(self.context)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for checkpoints and JSON."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RefinerConfig:
        """Inverse of :meth:`to_dict`; ValueError on unknown fields and bad values."""
        if not isinstance(data, dict):
            raise ValueError(f"refiner config must be a dict, got {type(data).__name__}")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown refiner config fields: {unknown}")
        return cls(**data)


def _block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class RefineNet(nn.Module):
    """forward(patches (V, 1, P, P)) -> (mu (V, 4, 2), sigma (V, 4, 2)), normalised patch units.

    Four conv stages (strides 1, 2, 2, 2) keep an 8x smaller map whose flattened features
    (position kept, unlike a global pool) feed a hidden layer, then mu and sigma.
    """

    def __init__(self, config: RefinerConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        self.features = nn.Sequential(
            _block(1, w, 1), _block(w, 2 * w, 2), _block(2 * w, 4 * w, 2), _block(4 * w, 4 * w, 2)
        )
        self.squeeze = nn.Sequential(nn.Conv2d(4 * w, w, 1), nn.ReLU(inplace=True))
        side = config.patch_size // 8
        self.hidden = nn.Sequential(nn.Linear(w * side * side, 256), nn.ReLU(inplace=True))
        self.mu = nn.Linear(256, 2 * CORNERS)
        self.sigma = nn.Linear(256, 2 * CORNERS)
        nn.init.zeros_(self.mu.weight)
        nn.init.zeros_(self.mu.bias)

    def forward(self, patches: Tensor) -> tuple[Tensor, Tensor]:
        hidden = self.hidden(self.squeeze(self.features(patches)).flatten(1))
        mu = self.mu(hidden).view(-1, CORNERS, 2)
        sigma = torch.sigmoid(self.sigma(hidden)).view(-1, CORNERS, 2) + SIGMA_FLOOR
        return mu, sigma


def vertebra_frames(corners: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centre (V, 2), angle (V,) radians, size (V,) px) of (V, 4, 2) (row, col) corners
    ordered top-left, top-right, bottom-left, bottom-right. The angle turns the image's column
    axis onto the vertebra's left-to-right axis; the size is its larger side."""
    corners = np.asarray(corners, dtype=np.float64)
    across = (corners[:, 1] - corners[:, 0] + corners[:, 3] - corners[:, 2]) / 2
    down = (corners[:, 2] - corners[:, 0] + corners[:, 3] - corners[:, 1]) / 2
    angle = np.arctan2(across[:, 0], across[:, 1])
    size = np.maximum(np.linalg.norm(across, axis=1), np.linalg.norm(down, axis=1))
    return corners.mean(axis=1), angle, size


def patch_matrices(
    centre: np.ndarray, angle: np.ndarray, size: np.ndarray, config: RefinerConfig
) -> np.ndarray:
    """(V, 3, 3) matrices mapping patch pixels (row, col, 1) to image pixels."""
    step = config.context * np.asarray(size, dtype=np.float64) / config.patch_size
    cos, sin = np.cos(angle), np.sin(angle)
    rotation = np.stack([np.stack([cos, sin], -1), np.stack([-sin, cos], -1)], 1)
    linear = rotation * step[:, None, None]
    middle = (config.patch_size - 1) / 2.0
    matrices = np.zeros((len(step), 3, 3))
    matrices[:, :2, :2] = linear
    matrices[:, :2, 2] = np.asarray(centre, dtype=np.float64) - linear @ np.array([middle, middle])
    matrices[:, 2, 2] = 1.0
    return matrices


def cut_patches(image: Tensor, matrices: np.ndarray, patch_size: int) -> Tensor:
    """(V, 1, P, P) bilinear patches of a normalised (H, W) image (off-image: PAD_VALUE), one
    batched ``grid_sample`` call; ``matrices`` from :func:`patch_matrices`."""
    height, width = image.shape
    grid_1d = torch.arange(patch_size, dtype=torch.float64)
    rows, cols = torch.meshgrid(grid_1d, grid_1d, indexing="ij")
    pixels = torch.stack([rows, cols, torch.ones_like(rows)], -1).reshape(-1, 3)
    where = torch.einsum("vij,pj->vpi", torch.as_tensor(matrices, dtype=torch.float64), pixels)
    x = where[..., 1] * (2.0 / max(width - 1, 1)) - 1.0
    y = where[..., 0] * (2.0 / max(height - 1, 1)) - 1.0
    grid = torch.stack([x, y], -1).view(len(matrices), patch_size, patch_size, 2)
    shifted = (image - PAD_VALUE)[None, None].expand(len(matrices), 1, height, width)
    patches = F.grid_sample(
        shifted, grid.to(image.dtype).to(image.device), align_corners=True, padding_mode="zeros"
    )
    return patches + PAD_VALUE


def standardise(patches: Tensor) -> Tensor:
    """Each patch to zero mean and unit spread (the network's input)."""
    mean = patches.mean(dim=(2, 3), keepdim=True)
    spread = patches.std(dim=(2, 3), keepdim=True).clamp_min(0.02)
    return (patches - mean) / spread


def working_image(image: np.ndarray, max_side: int) -> tuple[np.ndarray, np.ndarray]:
    """(normalised grey image with long side <= ``max_side``, 3x3 matrix mapping its pixels to
    the original's): what stage 2 cuts its patches from, reduced as the training films are."""
    small, factor = reduce_to_long_side(to_grey_float32(image), max_side)
    return normalise_intensity(small), block_matrix(factor)


def refinable(visible: np.ndarray) -> np.ndarray:
    """(V,) bool: the vertebrae whose four corners are all visible, from (4V,) ``visible``."""
    return np.asarray(visible, dtype=bool).reshape(-1, CORNERS).all(axis=1)


class Refiner:
    """A stage-2 network on a device: refines the corners of the vertebrae stage 1 found."""

    def __init__(self, config: RefinerConfig, net: RefineNet, device: torch.device) -> None:
        self.config = config
        self.net = net.to(device).eval()
        self.device = device

    def __call__(
        self, image: np.ndarray, landmarks: np.ndarray, sigma: np.ndarray, visible: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Refined copies of (K, 2) ``landmarks`` and ``sigma`` (film pixels) of ``image``;
        vertebrae not wholly ``visible`` keep their stage-1 values."""
        landmarks = np.array(landmarks, dtype=np.float64)
        sigma = np.array(sigma, dtype=np.float64)
        chosen = refinable(visible)
        if not chosen.any():
            return landmarks, sigma
        work, to_film = working_image(image, self.config.max_side)
        tensor = torch.from_numpy(work).to(self.device)
        rows = np.flatnonzero(np.repeat(chosen, CORNERS))
        for _ in range(self.config.passes):
            points, scale = self._pass(tensor, to_film, landmarks[rows].reshape(-1, CORNERS, 2))
            landmarks[rows], sigma[rows] = points, scale
        return landmarks, sigma

    def _pass(
        self, work: Tensor, to_film: np.ndarray, corners: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """One pass over (V, 4, 2) film corners: (4V, 2) new corners and sigma, film pixels."""
        corners = apply_affine(np.linalg.inv(to_film), corners)
        centre, angle, size = vertebra_frames(corners)
        # a vertebra stage 1 squashed or blew up is cut at a size like its neighbours'
        usual = float(np.median(size))
        size = np.clip(size, SIZE_RANGE[0] * usual, SIZE_RANGE[1] * usual)
        matrices = patch_matrices(centre, angle, size, self.config)
        with torch.inference_mode():
            patches = standardise(cut_patches(work, matrices, self.config.patch_size))
            mu, scale = self.net(patches)
        side = self.config.patch_size
        to_points = to_film @ matrices  # patch pixels -> film pixels
        patch_points = (mu.double().cpu().numpy() + 0.5) * side
        film_points = np.einsum("vij,vkj->vki", to_points[:, :2, :2], patch_points)
        film_points = film_points + to_points[:, None, :2, 2]
        step = np.sqrt(np.abs(np.linalg.det(to_points[:, :2, :2])))  # film px per patch px
        film_sigma = scale.double().cpu().numpy() * side * step[:, None, None]
        return film_points.reshape(-1, 2), film_sigma.reshape(-1, 2)

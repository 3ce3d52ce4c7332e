"""Localizer: image -> landmarks (row, col) and their uncertainty, in image pixels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from napari_nfdp.core.checkpoint import (
    DEFAULT_MODEL_PATH,
    Checkpoint,
    CheckpointError,
    load_checkpoint,
)
from napari_nfdp.core.network import ModelConfig
from napari_nfdp.core.preprocess import ImageError, apply_affine, prepare_input
from napari_nfdp.core.refine import CORNERS, Refiner, refinable
from napari_nfdp.core.schema import SPINE_LANDMARK_NAMES


@dataclass(frozen=True)
class Prediction:
    """Landmarks and sigma, both (K, 2) float64 (row, col) in image pixels.

    ``visible`` (K,) bool: the landmarks the model places on the film. A field-of-view-aware
    model (trained with landmarks off the film at their true positions) puts the vertebrae a
    chest film cuts off below its edge; those are not visible. ``review`` (K,) bool: the
    points a person should check first (:func:`review_mask`; with two stages, every point is
    judged against stage 2's sigma, and stage 1's flags stay on the refined points).
    ``doubt_ratio``: the film's median sigma over the model's usual sigma on such a film
    (:func:`usual_sigma_px`; NaN when the checkpoint does not say; stage 1's for a two-stage
    model): far above 1 on a film that shows no spine.
    """

    landmarks: np.ndarray
    sigma: np.ndarray
    landmark_names: tuple[str, ...]
    visible: np.ndarray
    review: np.ndarray
    doubt_ratio: float = float("nan")


def on_film(landmarks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(K,) bool: which (row, col) landmarks lie within an image of ``shape`` (pixel edges)."""
    points = np.asarray(landmarks, dtype=float)
    with np.errstate(invalid="ignore"):
        inside = (points >= 0).all(axis=1) & (points < np.asarray(shape[:2], float)).all(axis=1)
    return inside


REVIEW_SIGMA_FACTOR = 2.0  # a landmark whose sigma exceeds this many times the median is flagged


def needs_review(sigma: np.ndarray, factor: float = REVIEW_SIGMA_FACTOR) -> np.ndarray:
    """(K,) mask of landmarks whose predicted scale (mean over axes, NaN ignored) is more than
    ``factor`` times the median: the points a person should check first."""
    scale = np.asarray(sigma, dtype=float)
    scale = scale.mean(axis=1) if scale.ndim == 2 else scale
    finite = np.isfinite(scale)
    if not finite.any():
        return np.zeros(len(scale), dtype=bool)
    return finite & (scale > factor * float(np.median(scale[finite])))


TYPICAL_SIGMA_FACTOR = 2.5  # a point this many times the model's usual sigma needs a look (chosen
# with benchmarks/review_calibration.py: the most caught while marking <= 15 % of the points)


def vertebra_height(landmarks: np.ndarray, names: Sequence[str]) -> float | None:
    """Median height in pixels of the vertebrae of a 68-landmark spine (mean of the left and
    right edge, top corner to bottom corner); None for other schemas or degenerate points."""
    if tuple(names) != SPINE_LANDMARK_NAMES:
        return None
    corners = np.asarray(landmarks, dtype=float).reshape(-1, 4, 2)
    left = np.linalg.norm(corners[:, 2] - corners[:, 0], axis=1)
    right = np.linalg.norm(corners[:, 3] - corners[:, 1], axis=1)
    height = float(np.nanmedian((left + right) / 2)) if np.isfinite(left + right).any() else 0.0
    return height if height > 0 else None


STAGE1_SIGMA_KEY = "val_sigma_vertebrae"  # checkpoint metrics: stage 1's usual sigma
REFINED_SIGMA_KEY = "refined_sigma_vertebrae"  # the same after stage 2


def usual_sigma_px(
    metrics: dict,
    landmarks: np.ndarray,
    names: Sequence[str],
    image_height: float,
    key: str = STAGE1_SIGMA_KEY,
) -> float | None:
    """The sigma (pixels) the model typically gives on a film like this one, from what it
    showed on its validation films: ``metrics[key]`` (median sigma in vertebra heights, so a
    chest or lumbar film that shows the spine large is judged fairly) times this film's
    vertebra height, else, for stage 1, ``val_sigma_pct`` (percent of the image height); None
    when the checkpoint stores neither."""
    per_vertebra = metrics.get(key)
    height = vertebra_height(landmarks, names) if per_vertebra else None
    if per_vertebra and height:
        return float(per_vertebra) * height
    per_cent = metrics.get("val_sigma_pct") if key == STAGE1_SIGMA_KEY else None
    return float(per_cent) * image_height / 100 if per_cent else None


def review_mask(
    sigma: np.ndarray, usual_px: float | None, factor: float = REVIEW_SIGMA_FACTOR
) -> np.ndarray:
    """(K,) points to check first: sigma far above the film's median (``factor``), or far
    above the model's usual sigma on such a film (``TYPICAL_SIGMA_FACTOR`` x ``usual_px``, see
    :func:`usual_sigma_px`), so that a film that is wrong everywhere is flagged everywhere."""
    flagged = needs_review(sigma, factor)
    if usual_px:
        scale = np.asarray(sigma, dtype=float).mean(axis=1)
        with np.errstate(invalid="ignore"):
            flagged |= scale > TYPICAL_SIGMA_FACTOR * usual_px
    return flagged


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> CUDA when available, else CPU; a requested CUDA device must exist."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"unknown device {device!r}") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} was requested but CUDA is not available")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError(f"device {device!r} was requested but MPS is not available")
    return resolved


class Localizer:
    """A loaded model ready to predict; build it with :meth:`load`.

    ``refiner`` is stage 2 (:mod:`napari_nfdp.core.refine`) of a two-stage checkpoint, None for
    a single-stage one; setting it to None runs stage 1 alone (for comparisons).
    """

    def __init__(self, checkpoint: Checkpoint, device: torch.device) -> None:
        self.checkpoint = checkpoint
        self.config: ModelConfig = checkpoint.config
        self.landmark_names: tuple[str, ...] = checkpoint.landmark_names
        self.device = device
        self.model = checkpoint.build_model().to(device)
        refine_net = checkpoint.build_refiner_net()
        self.refiner: Refiner | None = (
            None if refine_net is None else Refiner(refine_net.config, refine_net, device)
        )

    @classmethod
    def load(cls, path: str | Path | None = None, device: str | None = None) -> Localizer:
        """Load a checkpoint (the bundled spine model when ``path`` is None)."""
        if path is None:
            if not DEFAULT_MODEL_PATH.is_file():
                raise CheckpointError(
                    f"the bundled model is missing ({DEFAULT_MODEL_PATH}); "
                    "reinstall napari-nfdp or pass the path of a checkpoint"
                )
            path = DEFAULT_MODEL_PATH
        return cls(load_checkpoint(path), resolve_device(device))

    def predict(self, image: np.ndarray) -> Prediction:
        """Landmarks of one image (2-D grey or (H, W, 3|4) colour, any dtype).

        An image that cannot be analysed raises :class:`~napari_nfdp.core.preprocess.ImageError`.
        """
        return self._predict(images=[image], batch_size=1, name_images=False)[0]

    def predict_batch(self, images: Sequence[np.ndarray], batch_size: int = 16) -> list[Prediction]:
        """Landmarks of several images, run through the network in chunks of ``batch_size``.

        An image that cannot be analysed raises :class:`~napari_nfdp.core.preprocess.ImageError`
        naming its index and shape.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        return self._predict(images, batch_size, name_images=True)

    def _predict(
        self, images: Sequence[np.ndarray], batch_size: int, name_images: bool
    ) -> list[Prediction]:
        predictions: list[Prediction] = []
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            prepared = []
            for offset, image in enumerate(chunk):
                try:
                    prepared.append(
                        prepare_input(image, self.config.input_size, self.config.fit_fraction)
                    )
                except ImageError as error:
                    if not name_images:
                        raise
                    raise ImageError(
                        f"image {start + offset} of {len(images)} "
                        f"(shape {tuple(np.shape(image))}): {error}"
                    ) from error
            batch = torch.from_numpy(np.stack([inputs for inputs, _ in prepared]))[:, None]
            with torch.inference_mode():
                mu, sigma = self.model(batch.to(self.device))
            mu_np = mu.double().cpu().numpy()
            sigma_np = sigma.double().cpu().numpy()
            predictions.extend(
                self._to_image(m, s, fit, image)
                for m, s, (_, fit), image in zip(mu_np, sigma_np, prepared, chunk, strict=True)
            )
        return predictions

    def _to_image(
        self, mu: np.ndarray, sigma: np.ndarray, fit: np.ndarray, image: np.ndarray
    ) -> Prediction:
        shape = np.shape(image)[:2]
        input_size = np.asarray(self.config.input_size, dtype=np.float64)
        input_points = (mu + 0.5) * input_size
        landmarks = apply_affine(np.linalg.inv(fit), input_points)
        scale = fit[0, 0]
        sigma_px = np.maximum(sigma, np.finfo(np.float32).tiny) * input_size / scale
        metrics, names = self.checkpoint.metrics, self.landmark_names
        usual = usual_sigma_px(metrics, landmarks, names, shape[0])  # is there a spine: stage 1
        ratio = float(np.median(sigma_px.mean(axis=1))) / usual if usual else float("nan")
        review = review_mask(sigma_px, usual)
        if self.refiner is not None:
            visible = on_film(landmarks, shape)
            refined = np.repeat(refinable(visible), CORNERS)
            landmarks, sigma_px = self.refiner(image, landmarks, sigma_px, visible)
            usual = usual_sigma_px(metrics, landmarks, names, shape[0], REFINED_SIGMA_KEY)
            # all points against the refined ones: those stage 2 could not refine (a vertebra
            # the film cuts through) stand out, and they are where the errors are; stage 1's
            # flags stay on the refined ones (stage 2 sees one vertebra, not a wrong level)
            review = review_mask(sigma_px, usual) | (review & refined)
        return Prediction(
            landmarks,
            sigma_px,
            self.landmark_names,
            on_film(landmarks, shape),
            review,
            ratio,
        )

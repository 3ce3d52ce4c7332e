"""Landmarks <-> napari Points layer (data + features + style), Cobb result -> Shapes layer.

The Points layer holds one point per landmark in image pixel (row, col) coordinates, with the
image layer's scale and translate, and these features:

* ``name`` ("T5-top-left"), ``vertebra`` ("T5"), ``corner`` ("top-left"): the schema;
* ``sigma``: the model's uncertainty in image pixels (mean of the row and column sigma), NaN
  when unknown;
* ``source``: "model" or "human" (a point a person moved, reset or hid);
* ``visible``: False for a landmark marked not visible (saved as NaN);
* ``review``: a model point whose sigma is far above the others' (drawn with a thick magenta
  border for the user to check);
* ``label``: the text drawn next to the point when labels are on (the vertebra name, once per
  vertebra).
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from napari.layers import Image, Points, Shapes

from napari_nfdp.core.cobb import CobbResult
from napari_nfdp.core.localizer import REVIEW_SIGMA_FACTOR, needs_review
from napari_nfdp.core.schema import SPINE_CORNERS
from napari_nfdp.io.overlay import CURVE_COLOURS, UNCERTAIN_COLOUR
from napari_nfdp.ui._napari_shim import move_shapes

LABEL_CORNER = "top-right"  # the corner whose point carries the vertebra name
HUMAN_BORDER = np.array([1.0, 1.0, 1.0, 1.0])
MODEL_BORDER = np.array([0.1, 0.1, 0.1, 1.0])
REVIEW_BORDER = np.array([*np.asarray(UNCERTAIN_COLOUR) / 255.0, 1.0])
DOUBT_BORDER = np.array([1.0, 0.55, 0.0, 1.0])  # orange: "no spine found?", not a measurement
POINT_SIZE_FRACTION = 1 / 110  # point diameter as a fraction of the image height
LINE_WIDTH_FRACTION = 1 / 350  # Cobb line width as a fraction of the image height
TEXT_OFFSET_FRACTION = 0.06  # Cobb text left of its line, as a fraction of the image height
# Each curve's end-vertebra lines are drawn this many times longer than the vertebra, so the
# lines of two curves sharing an end vertebra stay distinguishable.
LINE_EXTENSION = {"PT": 1.8, "MT": 2.6, "TL": 3.4}


def split_name(name: str) -> tuple[str, str]:
    """("T5", "top-left") for a spine landmark name; (name, "") for any other schema."""
    for corner in SPINE_CORNERS:
        if name.endswith("-" + corner):
            return name[: -len(corner) - 1], corner
    return name, ""


def vertebra_colours(groups: Sequence[str]) -> np.ndarray:
    """(K, 4) RGBA: one colour per group (vertebra), neighbouring groups clearly different."""
    order = list(dict.fromkeys(groups))
    # a golden-ratio hue walk keeps consecutive vertebrae far apart on the colour wheel
    palette = {
        g: (*colorsys.hsv_to_rgb((0.07 + 0.618034 * i) % 1.0, 0.75, 1.0), 1.0)
        for i, g in enumerate(order)
    }
    return np.array([palette[g] for g in groups], dtype=float).reshape(len(groups), 4)


def landmark_features(
    names: Sequence[str],
    source: Sequence[str],
    visible: Sequence[bool] | np.ndarray,
    sigma: np.ndarray | None,
    review_factor: float = REVIEW_SIGMA_FACTOR,
    model_review: np.ndarray | None = None,
) -> pd.DataFrame:
    """The feature table of a landmark Points layer (see the module docstring)."""
    k = len(names)
    groups, corners = zip(*(split_name(n) for n in names), strict=True) if k else ((), ())
    sigma_px = np.full(k, np.nan) if sigma is None else np.asarray(sigma, dtype=float).mean(axis=1)
    # spine: the vertebra name once, at one corner; other schemas: every landmark's name
    labels = [g if c in (LABEL_CORNER, "") else "" for g, c in zip(groups, corners, strict=True)]
    table = pd.DataFrame(
        {
            "name": list(names),
            "vertebra": list(groups),
            "corner": list(corners),
            "sigma": sigma_px,
            "source": list(source),
            "visible": np.asarray(visible, dtype=bool),
            "review": np.zeros(k, dtype=bool),
            "label": labels,
        }
    )
    return flag_for_review(table, review_factor, model_review)


def flag_for_review(
    features: pd.DataFrame, factor: float, model_review: np.ndarray | None = None
) -> pd.DataFrame:
    """Set ``review`` on visible model points whose sigma exceeds ``factor`` x the median
    sigma, or that the model itself flagged (``model_review``: sigma far above its usual)."""
    review = needs_review(features["sigma"].to_numpy(dtype=float), factor)
    if model_review is not None:
        review |= np.asarray(model_review, dtype=bool)
    review &= (features["source"] == "model").to_numpy() & features["visible"].to_numpy(bool)
    features = features.copy()
    features["review"] = review
    return features


def point_style(features: pd.DataFrame, doubtful: bool = False) -> dict[str, np.ndarray]:
    """Per-point face colour, border colour, border width (relative) and symbol.

    ``doubtful``: the detection failed the plausibility check and nobody confirmed it; every
    point is drawn in the warning style (pale, with a thick warning border), not as a result.
    """
    visible = features["visible"].to_numpy(bool)
    human = (features["source"] == "human").to_numpy()
    review = features["review"].to_numpy(bool)
    face = vertebra_colours(list(features["vertebra"]))
    face[~visible, 3] = 0.35
    border = np.where(human[:, None], HUMAN_BORDER, MODEL_BORDER)
    border[review] = REVIEW_BORDER
    width = np.where(review, 0.35, np.where(human, 0.2, 0.1))
    if doubtful:
        face[:, :3] = 0.5 + 0.5 * face[:, :3]
        face[:, 3] = 0.4
        border[:] = DOUBT_BORDER
        width = np.full(len(features), 0.35)
    symbol = np.where(visible, "disc", "x")
    return {"face_color": face, "border_color": border, "border_width": width, "symbol": symbol}


def image_height(image: Image) -> int:
    """The height in pixels of an image layer (of its full-resolution level if multiscale)."""
    data = image.data[0] if image.multiscale else image.data
    return int(data.shape[0])


def _point_size(height: float) -> float:
    return max(3.0, height * POINT_SIZE_FRACTION)


def landmark_layer_kwargs(
    features: pd.DataFrame,
    height: float,
    *,
    name: str,
    labels: bool = False,
    metadata: dict[str, Any] | None = None,
    **placement: Any,
) -> dict[str, Any]:
    """The keyword arguments of a landmark Points layer: features, point size (from the image
    ``height``), vertebra labels, style; ``placement`` adds scale / translate / units."""
    size = _point_size(height)
    return {
        "name": name,
        "features": features,
        "size": size,
        "border_width_is_relative": True,
        "text": {
            "string": "{label}",
            "size": 9,
            "color": "white",
            "anchor": "center",
            "translation": (0.0, 1.6 * size),
            "visible": labels,
        },
        "metadata": dict(metadata or {}),
        **placement,
        **point_style(features),
    }


def image_link(image: Image) -> dict[str, Any]:
    """Overlay metadata naming the image below: its layer name and its file (None if none)."""
    return {"nfdp_image": image.name, "nfdp_image_path": image.metadata.get("path")}


def make_points_layer(
    image: Image, points: np.ndarray, features: pd.DataFrame, *, labels: bool = False
) -> Points:
    """A landmark Points layer over ``image`` (same scale, translate and units), styled.

    The layer gets a copy of ``points``: napari moves dragged points in place.
    """
    return Points(
        np.array(points, dtype=float, copy=True),
        **landmark_layer_kwargs(
            features,
            image_height(image),
            name=f"{image.name} landmarks",
            labels=labels,
            metadata=image_link(image),
            scale=image.scale,
            translate=image.translate,
            units=image.units,
        ),
    )


def restyle_points(layer: Points, features: pd.DataFrame, doubtful: bool = False) -> None:
    """Give a landmark layer new features and the style that follows from them."""
    layer.features = features
    for key, value in point_style(features, doubtful).items():
        setattr(layer, key, value)


def fit_to_image(layer: Points | Shapes, image: Image) -> None:
    """Give an overlay layer the image's scale, translate, units and name (after a film
    change)."""
    layer.scale = image.scale
    layer.translate = image.translate
    layer.units = image.units
    layer.metadata = {**layer.metadata, **image_link(image)}


def _rgba(rgb: Sequence[int]) -> np.ndarray:
    return np.array([*np.asarray(rgb, dtype=float) / 255.0, 1.0])


def _hex(rgba: np.ndarray) -> str:
    return "#" + "".join(f"{round(255 * v):02x}" for v in rgba[:3])


def cobb_lines(result: CobbResult) -> tuple[list[np.ndarray], list[str], list[str]]:
    """(2, 2) lines (upper then lower end vertebra of PT, MT, TL), their text and curve.

    Each line runs through its vertebra's left- and right-side midpoints and is extended
    symmetrically; the text ("MT 42°") goes with the curve's upper line. A curve that is not
    measured (its two end vertebrae are one) is not drawn.
    """
    lines, labels, curves = [], [], []
    for curve in result.curves:
        if not curve.measured:
            continue
        factor = LINE_EXTENSION.get(curve.name, 2.0)
        for k, (left, right) in enumerate(np.asarray(curve.lines, dtype=float)):
            centre, half = (left + right) / 2, (right - left) / 2
            lines.append(np.stack([centre - factor * half, centre + factor * half]))
            labels.append(f"{curve.name} {curve.angle:.0f}°" if k == 0 else "")
            curves.append(curve.name)
    return lines, labels, curves


def make_cobb_layer(image: Image) -> Shapes:
    """An empty Shapes layer for the Cobb lines over ``image`` (same scale and translate)."""
    return Shapes(
        name=f"{image.name} Cobb",
        scale=image.scale,
        translate=image.translate,
        units=image.units,
        features={name: np.array([], dtype=str) for name in ("label", "curve", "colour")},
        feature_defaults={"label": "", "curve": "", "colour": "#ffffff"},
        text={
            "string": "{label}",
            "size": 12,
            "color": {"feature": "colour"},
            "anchor": "upper_left",  # left of the spine: the vertebra names are on the right
            "translation": (0.0, -TEXT_OFFSET_FRACTION * image_height(image)),
        },
        metadata={
            "nfdp_image": image.name,
            "nfdp_line_width": max(1.0, image_height(image) * LINE_WIDTH_FRACTION),
        },
    )


def show_cobb(layer: Shapes, result: CobbResult | None) -> None:
    """Draw ``result`` on the Cobb layer (or clear it when there is none).

    When the layer already shows a result only the vertices and texts change (fast enough to
    follow a dragged point); the colours and widths follow the fixed PT, MT, TL order.
    """
    if result is None:
        if layer.nshapes:
            layer.data = []
        return
    lines, labels, curves = cobb_lines(result)
    if layer.nshapes == len(lines):
        move_shapes(layer, lines)
        if list(layer.features["label"]) != labels:
            layer.features = {**layer.features.to_dict("list"), "label": labels}
        return
    colours = [_rgba(CURVE_COLOURS.get(c, (255, 255, 255))) for c in curves]
    layer.data = [(line, "line") for line in lines]
    layer.features = {"label": labels, "curve": curves, "colour": [_hex(c) for c in colours]}
    layer.edge_color = np.array(colours)
    layer.edge_width = layer.metadata["nfdp_line_width"]

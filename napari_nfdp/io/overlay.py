"""Render landmarks, Cobb lines and the angles onto a radiograph as an RGB picture (no napari
needed)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from skimage.draw import disk, line_aa

from napari_nfdp.core.cobb import CURVE_NAMES, CobbResult
from napari_nfdp.core.preprocess import normalise_intensity, to_grey_float32

CURVE_COLOURS = {"PT": (255, 200, 0), "MT": (255, 60, 60), "TL": (60, 160, 255)}
POINT_COLOUR = (0, 255, 120)
UNCERTAIN_COLOUR = (255, 0, 255)
TEXT_COLOUR = (255, 255, 255)
TEXT_BOX = (0, 0, 0, 170)  # translucent black behind the text


def _draw_line(rgb: np.ndarray, p0, p1, colour, width: int) -> None:
    h, w = rgb.shape[:2]
    for offset in range(-(width // 2), width // 2 + 1):
        rr, cc, val = line_aa(
            int(round(p0[0])) + offset,
            int(round(p0[1])),
            int(round(p1[0])) + offset,
            int(round(p1[1])),
        )
        keep = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
        rr, cc, val = rr[keep], cc[keep], val[keep][:, None]
        rgb[rr, cc] = (1 - val) * rgb[rr, cc] + val * np.asarray(colour, dtype=np.float32)


def render_overlay(
    image: np.ndarray,
    landmarks: np.ndarray,
    cobb: CobbResult | None = None,
    uncertain: np.ndarray | None = None,
    notes: Sequence[str] = (),
) -> np.ndarray:
    """An (H, W, 3) uint8 picture: the image in grey, landmarks as dots, Cobb end-vertebra lines.

    ``uncertain`` is an optional (K,) boolean mask of landmarks drawn in a warning colour. The
    top-left corner gets the angles of ``cobb`` (value and end vertebrae, or why a curve was
    not measured), then ``notes``; with neither there is no text.
    """
    grey = normalise_intensity(to_grey_float32(image)) + 0.5
    rgb = np.repeat((np.clip(grey, 0, 1) * 255).astype(np.float32)[..., None], 3, axis=2)
    scale = max(rgb.shape[:2]) / 1000.0
    radius, width = max(2.0, 6 * scale), max(1, int(round(2 * scale)))
    if cobb is not None:
        extend = 0.6  # lines reach beyond the vertebra so the angle reads clearly
        for curve in (c for c in cobb.curves if c.measured):  # no line for a 0-deg non-curve
            for left, right in curve.lines:
                d = right - left
                _draw_line(
                    rgb, left - extend * d, right + extend * d, CURVE_COLOURS[curve.name], width
                )
    flags = np.zeros(len(landmarks), bool) if uncertain is None else np.asarray(uncertain, bool)
    for (r, c), flag in zip(landmarks, flags, strict=True):
        if np.isfinite(r) and np.isfinite(c):
            rr, cc = disk((r, c), radius, shape=rgb.shape[:2])
            rgb[rr, cc] = UNCERTAIN_COLOUR if flag else POINT_COLOUR
    picture = np.clip(rgb, 0, 255).astype(np.uint8)
    lines = [(cobb.describe(name), CURVE_COLOURS[name]) for name in CURVE_NAMES] if cobb else []
    lines += [(note, TEXT_COLOUR) for note in notes if note]
    return draw_text(picture, lines) if lines else picture


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: only the small bitmap font
        return ImageFont.load_default()


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: float) -> list[str]:
    """``text`` broken at spaces into lines at most ``width`` pixels long (where possible)."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        trial = f"{line} {word}" if line else word
        if line and draw.textlength(trial, font=font) > width:
            lines.append(line)
            line = word
        else:
            line = trial
    return [*lines, line] if line else lines


def draw_text(picture: np.ndarray, lines: Sequence[tuple[str, tuple[int, int, int]]]) -> np.ndarray:
    """``picture`` (H, W, 3 uint8) with coloured text lines on a dark box in its top-left corner;
    the font grows with the picture and long lines wrap at its width."""
    image = Image.fromarray(picture)
    draw = ImageDraw.Draw(image, "RGBA")
    height, width = picture.shape[:2]
    size = max(11, round(max(height, width) / 70))
    font, pad = _font(size), max(3, size // 3)
    rows = [
        (part, colour)
        for text, colour in lines
        for part in _wrap(draw, text, font, width - 4 * pad)
    ]
    if not rows:
        return picture
    line_height = font.getbbox("Ag")[3] + pad // 2
    text_width = max(draw.textlength(text, font=font) for text, _ in rows)
    box = (pad, pad, 3 * pad + text_width, 3 * pad + line_height * len(rows))
    draw.rectangle(box, fill=TEXT_BOX)
    for i, (text, colour) in enumerate(rows):
        draw.text((2 * pad, 2 * pad + i * line_height), text, fill=colour, font=font)
    return np.array(image)

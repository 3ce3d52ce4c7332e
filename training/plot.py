"""``python -m training plot RUN``: a run's training loss and validation error as a PNG.

Reads ``RUN/log.jsonl`` (one record per epoch: epoch, epochs, loss, val_mre_pct, lr, seconds,
best) and draws two panels over the epochs with Pillow (matplotlib is not a dependency).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

DEFAULT_SIZE = (1000, 700)
LOSS_COLOUR = (31, 119, 180)
VAL_COLOUR = (214, 39, 40)
BEST_COLOUR = (44, 160, 44)
GRID_COLOUR = (225, 225, 225)
AXIS_COLOUR = (60, 60, 60)
SUPERSAMPLE = 2  # drawn this many times larger, then reduced: smooth lines and text

Series = tuple[str, Sequence[float], Sequence[float], tuple[int, int, int]]


def read_log(path: str | Path) -> list[dict]:
    """The records of a ``log.jsonl`` by epoch (the last one of an epoch written twice)."""
    records: dict[int, dict] = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            records[int(record["epoch"])] = record
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(
                f"{path}, line {number}: not a training log record ({error})"
            ) from None
    return [records[epoch] for epoch in sorted(records)]


def nice_ticks(low: float, high: float, count: int = 5, integer: bool = False) -> list[float]:
    """About ``count`` round tick values (steps of 1, 2, 2.5 or 5 x 10^k) covering [low, high]."""
    if high <= low:
        pad = 1.0 if integer else (abs(low) * 0.1 or 1.0)
        low, high = low - pad, high + pad
    raw = (high - low) / max(1, count)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * 0.999)
    if integer:
        step = max(1.0, round(step))
    first, last = math.floor(low / step) * step, math.ceil(high / step) * step
    return [first + i * step for i in range(round((last - first) / step) + 1)]


def _label(value: float) -> str:
    return f"{round(value, 10):g}"


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: only the small bitmap font
        return ImageFont.load_default()


class _Canvas:
    """A white picture with the fonts and the scale every panel uses."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.s = SUPERSAMPLE
        self.image = Image.new("RGB", (size[0] * self.s, size[1] * self.s), "white")
        self.draw = ImageDraw.Draw(self.image)
        text = max(10, round(min(size) / 50))
        self.font, self.title_font = _font(text * self.s), _font(round(text * 1.25) * self.s)
        self.text_height = self.font.getbbox("Ag")[3]

    def text(self, xy, text: str, anchor: str = "la", font=None, fill=AXIS_COLOUR) -> None:
        self.draw.text(xy, text, fill=fill, font=font or self.font, anchor=anchor)

    def panel(
        self,
        box: tuple[float, float, float, float],
        title: str,
        series: Sequence[Series],
        x_ticks: Sequence[float],
        markers: Sequence[tuple[str, Sequence[tuple[float, float]], tuple[int, int, int]]] = (),
    ) -> None:
        """Axes, grid, ticks, the series as lines and a legend inside ``box`` (pixels)."""
        left, top, right, bottom = box
        s, draw = self.s, self.draw
        self.text((left, top - self.text_height * 1.5), title, font=self.title_font)
        values = [y for _, _, ys, _ in series for y in ys if math.isfinite(y)]
        if not values:
            draw.rectangle(box, outline=AXIS_COLOUR, width=s)
            self.text(((left + right) / 2, (top + bottom) / 2), "no values", anchor="mm")
            return
        y_ticks = nice_ticks(min(values), max(values))

        def to_xy(x: float, y: float) -> tuple[float, float]:
            fx = (x - x_ticks[0]) / (x_ticks[-1] - x_ticks[0])
            fy = (y - y_ticks[0]) / (y_ticks[-1] - y_ticks[0])
            return left + fx * (right - left), bottom - fy * (bottom - top)

        for y in y_ticks:
            _, py = to_xy(x_ticks[0], y)
            draw.line([(left, py), (right, py)], fill=GRID_COLOUR, width=s)
            draw.line([(left - 4 * s, py), (left, py)], fill=AXIS_COLOUR, width=s)
            self.text((left - 6 * s, py), _label(y), anchor="rm")
        for x in x_ticks:
            px, _ = to_xy(x, y_ticks[0])
            draw.line([(px, bottom), (px, bottom + 4 * s)], fill=AXIS_COLOUR, width=s)
            self.text((px, bottom + 6 * s), _label(x), anchor="ma")
        draw.rectangle(box, outline=AXIS_COLOUR, width=s)
        for _, xs, ys, colour in series:
            points = [
                to_xy(x, y) if math.isfinite(y) else None for x, y in zip(xs, ys, strict=True)
            ]
            for a, b in zip(points, points[1:], strict=False):
                if a is not None and b is not None:
                    draw.line([a, b], fill=colour, width=2 * s)
            if len(points) <= 60:
                for p in filter(None, points):
                    draw.ellipse([p[0] - 3 * s, p[1] - 3 * s, p[0] + 3 * s, p[1] + 3 * s], colour)
        for _, spots, colour in markers:
            for p in (to_xy(x, y) for x, y in spots if math.isfinite(y)):
                r = 6 * s
                draw.ellipse([p[0] - r, p[1] - r, p[0] + r, p[1] + r], outline=colour, width=2 * s)
        entries = [(n, c, False) for n, _, _, c in series] + [(n, c, True) for n, _, c in markers]
        self._legend(box, entries)

    def _legend(self, box, entries: Sequence[tuple[str, tuple[int, int, int], bool]]) -> None:
        """A legend in the top-right corner of ``box``: a line per series, a ring per marker."""
        s, pad, line = self.s, 6 * self.s, self.text_height * 1.4
        width = max(self.draw.textlength(name, font=self.font) for name, _, _ in entries)
        right, top = box[2] - pad, box[1] + pad
        left = right - width - 40 * s - 2 * pad
        self.draw.rectangle(
            [left, top, right, top + line * len(entries) + pad],
            fill="white",
            outline=AXIS_COLOUR,
            width=s,
        )
        for i, (name, colour, ring) in enumerate(entries):
            y, x = top + pad / 2 + line * (i + 0.5), left + pad + 14 * s
            if ring:
                r = 6 * s
                self.draw.ellipse([x - r, y - r, x + r, y + r], outline=colour, width=2 * s)
            else:
                self.draw.line([(x - 14 * s, y), (x + 14 * s, y)], fill=colour, width=3 * s)
            self.text((left + pad + 36 * s, y), name, anchor="lm")

    def save(self, path: Path) -> Path:
        size = (self.image.width // self.s, self.image.height // self.s)
        self.image.resize(size, Image.Resampling.LANCZOS).save(path)
        return path


def plot_run(
    run: str | Path, out: str | Path | None = None, size: tuple[int, int] = DEFAULT_SIZE
) -> Path:
    """Draw ``run``'s training loss and validation MRE per epoch into ``out`` (default
    ``RUN/curves.png``) as a ``size`` (width, height) PNG; return its path."""
    run = Path(run)
    log = run / "log.jsonl" if run.is_dir() else run
    if not log.is_file():
        raise FileNotFoundError(f"no training log {log}")
    records = read_log(log)
    if not records:
        raise ValueError(f"{log} has no epochs yet")
    width, height = size
    if width < 200 or height < 150:
        raise ValueError(f"a plot needs at least 200 x 150 pixels, not {width} x {height}")
    out = Path(out) if out is not None else log.parent / "curves.png"
    epochs = [float(r["epoch"]) for r in records]
    loss = [float(r.get("loss", math.nan)) for r in records]
    val = [math.nan if r.get("val_mre_pct") is None else float(r["val_mre_pct"]) for r in records]
    best = [(e, v) for e, v, r in zip(epochs, val, records, strict=True) if r.get("best")]

    canvas = _Canvas(size)
    s, th = canvas.s, canvas.text_height
    left, right = 0.02 * width * s + 5 * th, width * s - 0.02 * width * s - 2 * th
    top, bottom = 2.2 * th, height * s - 2.6 * th
    gap = 3.5 * th
    middle = (top + bottom) / 2
    x_ticks = nice_ticks(epochs[0], epochs[-1], count=8, integer=True)
    total = records[-1].get("epochs", "?")
    best_text = f", best validation MRE {min(v for _, v in best):.3f} %" if best else ""
    canvas.text((left, 0.6 * th), f"{run.name}: {len(records)} of {total} epochs{best_text}")
    canvas.panel(
        (left, top + th, right, middle - gap / 2),
        "training loss",
        [("training loss", epochs, loss, LOSS_COLOUR)],
        x_ticks,
    )
    canvas.panel(
        (left, middle + gap / 2 + th, right, bottom),
        "validation MRE, % of image height",
        [("validation MRE", epochs, val, VAL_COLOUR)],
        x_ticks,
        markers=[("new best (best.pt)", best, BEST_COLOUR)],
    )
    canvas.text(((left + right) / 2, height * s - 0.3 * th), "epoch", anchor="md")
    out.parent.mkdir(parents=True, exist_ok=True)
    return canvas.save(out)

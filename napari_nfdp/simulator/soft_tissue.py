"""Soft tissue at the coarse level: body outline, skull, lungs, heart, scapulae, bowel gas."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from napari_nfdp.simulator.anatomy import _RIB_REACH, _T1, _Body, _ellipse, _Spine
from napari_nfdp.simulator.raster import _Painter


def _render_soft(
    rng: np.random.Generator, spine: _Spine, body: _Body, paint: _Painter
) -> np.ndarray:
    """Soft tissue, skull, lungs, heart, scapulae, gas: smooth attenuation at the coarse level."""
    level = {
        name: spine.corners[i].mean(axis=0)[0]
        for name, i in (
            ("C2", 0),
            ("T1", _T1),
            ("T6", _T1 + 5),
            ("T10", _T1 + 9),
            ("L1", _T1 + 12),
            ("L3", _T1 + 14),
        )
    }
    sacrum, _ = spine.at(spine.sacrum_s)
    soft = rng.uniform(0.7, 1.3)
    arms = 55.0 if body.arms_down else 0.0
    profile = [
        (level["C2"] - 260, 70),
        (level["C2"] - 120, 80),
        (level["C2"] + 20, 55),
        (level["T1"] - 40, 60 + 0.2 * body.fat),
        (level["T1"] - 15, body.chest + body.fat + (arms or rng.uniform(15, 40))),
        (level["T6"], body.chest * 0.98 + body.fat + arms),
        (level["T10"], body.chest * 0.97 + body.fat + arms),
        (level["L3"], body.chest * 0.82 + body.fat * 1.3),
        (sacrum[0] + 60, body.chest * 1.1 + body.fat * 1.4),
        (sacrum[0] + 700, body.chest * 1.05 + body.fat),
    ]
    r = np.array([p[0] for p in profile])
    half = np.array([p[1] for p in profile])
    mid = body.midline(r)
    paint.polygon(
        np.vstack([np.stack([r, mid - half], 1), np.stack([r, mid + half], 1)[::-1]]), soft
    )
    skull = _ellipse(np.array([level["C2"] - 110, body.midline(level["C2"])]), (90.0, 78.0), n=32)
    paint.polygon(skull, soft * rng.uniform(0.15, 0.4))
    mm = paint.px_per_mm
    base = 0.45 * ndimage.gaussian_filter(paint.layer, 4.0 * mm)
    base += 0.55 * ndimage.gaussian_filter(paint.layer, 40.0 * mm)

    # Lungs bounded by the ribcage, the mediastinum (and heart) and the diaphragm domes.
    paint.layer[:] = 0.0
    lung = soft * rng.uniform(0.35, 0.65)
    for side in (-1.0, 1.0):
        apex = level["T1"] - rng.uniform(15, 35)
        pts = [[apex, body.midline(apex) + side * 30]]
        for k in range(10):
            row = spine.frame(_T1 + k)[0][0] + 0.3 * body.chest * _RIB_REACH[k]
            pts.append([row, body.midline(row) + side * (body.chest * _RIB_REACH[k] - 10.0)])
        dome = (
            level["T10"]
            + (rng.uniform(5, 25) if side * body.heart_side > 0 else 0.0)
            + rng.normal(0, 10)
        )
        for drop, reach in ((45, 0.9), (0, 0.5), (15, 0.15)):
            pts.append([dome + drop, body.midline(dome + drop) + side * reach * body.chest])
        heart = side * body.heart_side > 0
        for name in ("T10", "T6"):
            inner = 0.45 if (heart and name == "T10") else 0.16
            pts.append([level[name], body.midline(level[name]) + side * inner * body.chest])
        pts.append([level["T1"] + 10, body.midline(level["T1"]) + side * 25])
        paint.polygon(np.array(pts), -lung)
    lungs = ndimage.gaussian_filter(paint.layer, 10.0 * mm)

    paint.layer[:] = 0.0
    trachea = np.array(
        [[level["C2"], body.midline(level["C2"])], [level["T6"] - 20, body.midline(level["T6"])]]
    )
    paint.stroke(trachea, 8.0, -0.12 * soft)
    heart_c = np.array(
        [level["T10"] - 25, body.midline(level["T10"]) + body.heart_side * 0.2 * body.chest]
    )
    paint.polygon(_ellipse(heart_c, (55.0, 0.4 * body.chest)), lung * rng.uniform(0.1, 0.3))
    for side in (-1.0, 1.0):
        if rng.random() < 0.7:
            t1 = level["T1"]
            blade = [[t1 + 5, 0.55], [t1 - 10, 1.05], [t1 + 130 + rng.normal(0, 10), 0.75]]
            blade = np.array([[row, body.midline(row) + side * f * body.chest] for row, f in blade])
            paint.polygon(blade, soft * rng.uniform(0.05, 0.15))
    for _ in range(rng.poisson(5)):
        c = [
            rng.uniform(level["L1"], sacrum[0] + 40),
            body.midline(level["L3"]) + rng.uniform(-0.8, 0.8) * body.chest,
        ]
        gas = _ellipse(np.array(c), tuple(rng.uniform(8, 30, 2)), rng.uniform(0, 3))
        paint.polygon(gas, -soft * rng.uniform(0.04, 0.18))
    if rng.random() < 0.4:
        stomach = [
            level["T10"] + 60,
            body.midline(level["T10"]) + body.heart_side * 0.45 * body.chest,
        ]
        paint.polygon(_ellipse(np.array(stomach), (22.0, 35.0)), -soft * 0.2)
    detail = ndimage.gaussian_filter(paint.layer, 3.0 * mm)
    clutter = ndimage.gaussian_filter(
        rng.standard_normal(paint.layer.shape, dtype=np.float32), 4.0 * mm + 1
    )
    clutter *= rng.uniform(0.0, 0.06) / max(float(clutter.std()), 1e-6)
    inside = base > 0.05 * soft
    return base * (1.0 + clutter) + (lungs + detail) * inside

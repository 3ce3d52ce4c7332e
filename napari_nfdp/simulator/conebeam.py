"""Cone-beam geometry and exact line integrals through analytic solids and soft-tissue lofts.

The detector is the plane ``z = 0`` (world mm; x = image columns, y = image rows, both growing
to the image right and down) and the point source sits at ``source`` with ``z > 0``. Pixel
``(row, col)`` is the detector point ``origin + pitch * (col, row)``; its ray runs from the
source (``t = 0``) to that point (``t = 1``), so every ray direction is linear in (row, col) and
so are the quadric and plane coefficients along it. ``line_integrals`` sums, for every pixel,
attenuation x chord length over all solids (each only over the pixels of its projected bounding
box, all pairs of a group vectorised in chunks) and over all lofts.

A ``Loft`` is a smooth soft-tissue body (trunk, limbs, lungs, airway): an elliptic
cross-section that varies along y, met by each ray at the y where it crosses the loft's mid
depth (exact for a prism, a close approximation for a slowly varying profile), optionally with
ellipsoids carved out of it (heart in the lung, diaphragm domes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from napari_nfdp.simulator.solids import PackedSolids

_CHUNK = 1 << 16  # solid-pixel pairs per vectorised pass


@dataclass(frozen=True)
class ConeBeam:
    """A point source and a flat detector grid (see the module docstring)."""

    source: np.ndarray  # (3,) world mm, z > 0
    origin: np.ndarray  # (2,) detector (x, y) of the centre of pixel (0, 0)
    pitch: float  # mm per pixel on the detector
    shape: tuple[int, int]

    def project(self, points: np.ndarray) -> np.ndarray:
        """(row, col) detector pixels of world points (..., 3)."""
        points = np.asarray(points, dtype=float)
        s = self.source
        k = s[2] / (s[2] - points[..., 2])
        x = s[0] + (points[..., 0] - s[0]) * k
        y = s[1] + (points[..., 1] - s[1]) * k
        return np.stack([(y - self.origin[1]) / self.pitch, (x - self.origin[0]) / self.pitch], -1)

    def magnification(self, z: float | np.ndarray) -> float | np.ndarray:
        """Geometric magnification of an object at height ``z`` above the detector."""
        return self.source[2] / (self.source[2] - np.asarray(z, dtype=float))

    def coarse(self, factor: int) -> ConeBeam:
        """The same detector sampled every ``factor`` pixels (pixel centres kept aligned)."""
        shape = (-(-self.shape[0] // factor), -(-self.shape[1] // factor))
        origin = self.origin + (factor - 1) / 2.0 * self.pitch
        return ConeBeam(self.source, origin, self.pitch * factor, shape)

    def ray_lengths(self) -> np.ndarray:
        """(rows, cols) distance from the source to every pixel centre (mm)."""
        dx, dy, dz = self._directions()
        return np.sqrt(dx[None, :] ** 2 + dy[:, None] ** 2 + dz**2)

    def _directions(self) -> tuple[np.ndarray, np.ndarray, float]:
        cols = self.origin[0] + self.pitch * np.arange(self.shape[1]) - self.source[0]
        rows = self.origin[1] + self.pitch * np.arange(self.shape[0]) - self.source[1]
        return cols, rows, -float(self.source[2])


@dataclass(frozen=True)
class Loft:
    """A soft-tissue body with elliptic cross-sections along y (uniform ``y`` grid, mm)."""

    y: np.ndarray
    xc: np.ndarray
    zc: np.ndarray
    a: np.ndarray  # half-width along x; 0 where the loft is absent
    b: np.ndarray  # half-depth along z
    density: float
    holes: list = field(default_factory=list)  # [(centre (3,), metric (3, 3))] ellipsoids

    def moved(self, rotation: np.ndarray, shift: np.ndarray) -> Loft:
        """The loft after ``x -> rotation @ x + shift`` (a small rotation: the cross-sections
        keep their orientation, their centres move and the y grid is resampled)."""
        centres = np.stack([self.xc, self.y, self.zc], -1) @ rotation.T + shift
        y = self.y + shift[1]
        order = np.argsort(centres[:, 1])
        values = [
            np.interp(y, centres[order, 1], v[order])
            for v in (centres[:, 0], centres[:, 2], self.a, self.b)
        ]
        holes = [(rotation @ c + shift, m @ rotation.T) for c, m in self.holes]
        return Loft(y, *values, density=self.density, holes=holes)


def line_integrals(solids: PackedSolids, lofts: list[Loft], beam: ConeBeam) -> np.ndarray:
    """(rows, cols) float32 line integral of the attenuation along every pixel's ray."""
    return solid_integrals(solids, beam) + loft_integrals(lofts, beam)


def solid_integrals(solids: PackedSolids, beam: ConeBeam) -> np.ndarray:
    """(rows, cols) float32 line integral through the analytic solids alone."""
    rows, cols = beam.shape
    total = np.zeros(rows * cols)
    if len(solids):
        boxes = _pixel_boxes(solids.lo, solids.hi, beam)
        keep = (boxes[:, 1] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 2])
        keys = solids.nq * 8 + solids.nk
        for key in np.unique(keys[keep]):
            idx = np.flatnonzero(keep & (keys == key))
            table = _coefficients(solids, idx, beam, key // 8, key % 8)
            _accumulate(total, table, boxes[idx], key // 8, key % 8, cols)
    image = total.reshape(rows, cols) * beam.ray_lengths()
    return image.astype(np.float32)


def loft_integrals(lofts: list[Loft], beam: ConeBeam) -> np.ndarray:
    """(rows, cols) float32 line integral through the soft-tissue lofts alone."""
    image = np.zeros(beam.shape)
    for loft in lofts:
        _add_loft(image, loft, beam)
    image *= beam.ray_lengths()
    return image.astype(np.float32)


def _pixel_boxes(lo: np.ndarray, hi: np.ndarray, beam: ConeBeam) -> np.ndarray:
    """(n, 4) [r0, r1, c0, c1) pixel boxes of the projected world boxes, clipped to the grid."""
    corners = np.stack(
        [
            np.stack(
                [
                    np.where(i & 1, hi[:, 0], lo[:, 0]),
                    np.where(i & 2, hi[:, 1], lo[:, 1]),
                    np.where(i & 4, hi[:, 2], lo[:, 2]),
                ],
                axis=-1,
            )
            for i in range(8)
        ],
        axis=1,
    )
    px = beam.project(corners)
    low = np.floor(px.min(axis=1)).astype(np.int64)
    high = np.ceil(px.max(axis=1)).astype(np.int64) + 1
    r0 = np.clip(low[:, 0], 0, beam.shape[0])
    r1 = np.clip(high[:, 0], 0, beam.shape[0])
    c0 = np.clip(low[:, 1], 0, beam.shape[1])
    c1 = np.clip(high[:, 1], 0, beam.shape[1])
    return np.stack([r0, r1, c0, c1], axis=1)


def _coefficients(solids: PackedSolids, idx: np.ndarray, beam: ConeBeam, nq: int, nk: int):
    """(n_coef, m) per-solid polynomial coefficients in (row, col) for one group of solids."""
    s = beam.source
    d0 = np.array([beam.origin[0] - s[0], beam.origin[1] - s[1], -s[2]])
    dr = np.array([0.0, beam.pitch, 0.0])
    dc = np.array([beam.pitch, 0.0, 0.0])
    out = []
    for j in range(nq):
        m = solids.metric[idx, j]
        g0, gr, gc = m @ d0, m @ dr, m @ dc
        o = np.einsum("nij,nj->ni", m, s - solids.centre[idx, j])
        dot = lambda u, v: (u * v).sum(axis=1)  # noqa: E731
        out += [dot(g0, g0), 2 * dot(g0, gr), 2 * dot(g0, gc)]
        out += [dot(gr, gr), 2 * dot(gr, gc), dot(gc, gc)]
        out += [dot(o, g0), dot(o, gr), dot(o, gc), dot(o, o) - 1.0]
    for j in range(nk):
        n, h = solids.planes[idx, j, :3], solids.planes[idx, j, 3]
        out += [n @ d0, n @ dr, n @ dc, h - n @ s]
    out.append(solids.density[idx])
    return np.array(out)


def _accumulate(total, table, boxes, nq: int, nk: int, cols: int) -> None:
    """Add density x parametric chord of every (solid, pixel) pair of one group to ``total``."""
    heights = boxes[:, 1] - boxes[:, 0]
    widths = boxes[:, 3] - boxes[:, 2]
    counts = heights * widths
    ends = np.cumsum(counts)
    start = 0
    while start < len(counts):
        base = ends[start - 1] if start else 0
        stop = max(int(np.searchsorted(ends, base + _CHUNK, side="right")), start + 1)
        part = slice(start, stop)
        n = counts[part]
        offset = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
        w = np.repeat(widths[part], n)
        rr = np.repeat(boxes[part, 0], n) + offset // w
        cc = np.repeat(boxes[part, 2], n) + offset % w
        coef = np.repeat(table[:, part], n, axis=1)
        dt = _chords(coef, rr.astype(float), cc.astype(float), nq, nk)
        dt *= coef[-1]
        total += np.bincount(rr * cols + cc, weights=dt, minlength=total.size)
        start = stop


def _chords(coef: np.ndarray, r: np.ndarray, c: np.ndarray, nq: int, nk: int) -> np.ndarray:
    """Parametric chord length of each pair's ray through its solid (0 when missed)."""
    lo = hi = None
    for j in range(nq):
        a0, ar, ac, arr, arc, acc, b0, br, bc, cc = coef[10 * j : 10 * j + 10]
        a = a0 + r * (ar + r * arr + c * arc) + c * (ac + c * acc)
        b = b0 + r * br + c * bc
        disc = b * b - a * cc
        hit = disc > 0.0
        root = np.sqrt(np.where(hit, disc, 0.0))
        if nq == 1 and nk == 0:
            return 2.0 * root / a
        q = root - b  # > 0 whenever the solid lies in front of the source
        near = np.where(hit, cc / np.where(hit, q, 1.0), 1.0)
        far = np.where(hit, q / a, 0.0)
        lo = near if lo is None else np.maximum(lo, near)
        hi = far if hi is None else np.minimum(hi, far)
    lo = np.maximum(lo, 0.0)  # only what lies between the source and the detector
    for j in range(nk):
        n0, nr, nc, rhs = coef[10 * nq + 4 * j : 10 * nq + 4 * j + 4]
        nd = n0 + r * nr + c * nc
        nd = np.where(nd == 0.0, 1e-30, nd)
        limit = rhs / nd
        up = nd > 0.0
        hi = np.where(up, np.minimum(hi, limit), hi)
        lo = np.where(up, lo, np.maximum(lo, limit))
    return np.maximum(hi - lo, 0.0)


def _add_loft(image: np.ndarray, loft: Loft, beam: ConeBeam) -> None:
    """Add density x parametric chord through ``loft`` (minus its holes) to ``image``."""
    xdir, ydir, zdir = beam._directions()
    s = beam.source
    there = (loft.a > 0) & (loft.b > 0)
    if not there.any():
        return
    z_mid = float(np.mean(loft.zc[there]))
    pos = (s[1] + (1.0 - z_mid / s[2]) * ydir - loft.y[0]) / (loft.y[1] - loft.y[0])
    rows = np.flatnonzero((pos >= 0) & (pos <= len(loft.y) - 1))
    if rows.size == 0:
        return
    r0, r1 = rows[0], rows[-1] + 1
    x = np.array([np.min((loft.xc - loft.a)[there]), np.max((loft.xc + loft.a)[there])])
    z = np.array([np.min((loft.zc - loft.b)[there]), np.max((loft.zc + loft.b)[there])])
    x_det = s[0] + (x[:, None] - s[0]) * (s[2] / (s[2] - z[None, :]))
    c0 = max(int(np.floor((x_det.min() - beam.origin[0]) / beam.pitch)), 0)
    c1 = min(int(np.ceil((x_det.max() - beam.origin[0]) / beam.pitch)) + 1, beam.shape[1])
    if c1 <= c0:
        return
    grid = np.arange(len(loft.y))
    xc, zc, a, b = (np.interp(pos[r0:r1], grid, v) for v in (loft.xc, loft.zc, loft.a, loft.b))
    present = (a > 1e-3) & (b > 1e-3)
    a = np.where(present, a, 1.0)[:, None]
    b = np.where(present, b, 1.0)[:, None]
    ox = (s[0] - xc[:, None]) / a
    oz = (s[2] - zc[:, None]) / b
    ex = xdir[None, c0:c1] / a
    ez = zdir / b
    qa = ex * ex + ez * ez
    qb = ox * ex + oz * ez
    qc = ox * ox + oz * oz - 1.0
    disc = qb * qb - qa * qc
    hit = (disc > 0.0) & present[:, None]
    root = np.sqrt(np.where(hit, disc, 0.0))
    q = root - qb
    lo = np.where(hit, qc / np.where(hit, q, 1.0), 1.0)
    hi = np.where(hit, q / qa, 0.0)
    chord = np.maximum(hi - lo, 0.0)
    for centre, metric in loft.holes:
        reach = np.linalg.norm(np.linalg.inv(metric), axis=1)
        box = _pixel_boxes((centre - reach)[None], (centre + reach)[None], beam)[0]
        h0, h1 = max(box[0], r0), min(box[1], r1)
        w0, w1 = max(box[2], c0), min(box[3], c1)
        if h1 > h0 and w1 > w0:
            block = (slice(h0 - r0, h1 - r0), slice(w0 - c0, w1 - c0))
            chord[block] -= _hole_overlap(lo[block], hi[block], centre, metric, beam, h0, w0)
    image[r0:r1, c0:c1] += loft.density * chord


def _hole_overlap(lo, hi, centre, metric, beam: ConeBeam, r0: int, c0: int) -> np.ndarray:
    """Parametric overlap of the loft intervals [lo, hi] with one ellipsoid's intervals."""
    rows = r0 + np.arange(lo.shape[0], dtype=float)[:, None]
    cols = c0 + np.arange(lo.shape[1], dtype=float)[None, :]
    s = beam.source
    d0 = np.array([beam.origin[0] - s[0], beam.origin[1] - s[1], -s[2]])
    g0 = metric @ d0
    gr = metric @ np.array([0.0, beam.pitch, 0.0])
    gc = metric @ np.array([beam.pitch, 0.0, 0.0])
    o = metric @ (s - centre)
    qa = (g0 @ g0) + rows * (2 * g0 @ gr + rows * (gr @ gr) + 2 * cols * (gr @ gc))
    qa = qa + cols * (2 * g0 @ gc + cols * (gc @ gc))
    qb = (o @ g0) + rows * (o @ gr) + cols * (o @ gc)
    qc = float(o @ o) - 1.0
    disc = qb * qb - qa * qc
    hit = disc > 0.0
    root = np.sqrt(np.where(hit, disc, 0.0))
    q = root - qb
    near = np.where(hit, qc / np.where(hit, q, 1.0), 1.0)
    far = np.where(hit, q / qa, 0.0)
    return np.maximum(np.minimum(hi, far) - np.maximum(lo, near), 0.0)

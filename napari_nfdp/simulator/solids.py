"""Analytic solids for the projecting simulator: quadrics cut by half-spaces, in world mm.

A solid is the intersection of one or two quadrics ``|M (x - c)|^2 <= 1`` (an ellipsoid, or an
elliptic cylinder when one row of ``M`` is zero) and up to six half-spaces ``n . x <= h``, with
one attenuation value (1/mm, relative to water). Every solid is convex, so a ray meets it in one
interval and its chord length is exact (see ``conebeam``). Bones get a cortical shell as an
outer solid at the cortical value plus a shrunk inner solid carrying ``inner - cortex``.

``Solids`` collects solids with small builder methods (ellipsoid, cylinder, rounded box, mitred
tube) and ``Solids.packed`` turns them into flat arrays, optionally moved by a rigid transform.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def unit(v: np.ndarray) -> np.ndarray:
    """``v`` scaled to unit length (last axis)."""
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def frame(axis: np.ndarray, hint: np.ndarray) -> np.ndarray:
    """Orthonormal 3x3 columns (a, b, axis): ``a`` is ``hint`` made perpendicular to ``axis``."""
    z = unit(axis)
    a = np.asarray(hint, dtype=float) - np.dot(hint, z) * z
    if np.linalg.norm(a) < 1e-9:
        a = _cross(z, np.array([0.0, 1.0, 0.0] if abs(z[1]) < 0.9 else [1.0, 0.0, 0.0]))
    a = unit(a)
    return np.stack([a, _cross(z, a), z], axis=1)


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross product of two 3-vectors (much faster than ``np.cross`` for one pair)."""
    return np.array(
        [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
    )


@dataclass(frozen=True)
class PackedSolids:
    """Flat arrays of ``n`` solids, ready for projection.

    ``centre`` (n, 2, 3) and ``metric`` (n, 2, 3, 3) hold the quadrics (``nq`` of them valid),
    ``planes`` (n, 6, 4) rows ``(nx, ny, nz, h)`` (``nk`` of them valid), ``lo``/``hi`` the world
    bounding boxes, ``density`` the attenuation.
    """

    centre: np.ndarray
    metric: np.ndarray
    nq: np.ndarray
    planes: np.ndarray
    nk: np.ndarray
    density: np.ndarray
    lo: np.ndarray
    hi: np.ndarray

    def __len__(self) -> int:
        return len(self.density)


class Solids:
    """A growing list of convex analytic solids (world mm) with builder helpers."""

    def __init__(self) -> None:
        self._quadrics: list[list[tuple[np.ndarray, np.ndarray]]] = []
        self._planes: list[list[tuple[np.ndarray, float]]] = []
        self._density: list[float] = []
        self._box: list[tuple[np.ndarray, np.ndarray]] = []
        self._blocks: list[PackedSolids] = []  # solids added in bulk (tubes)

    def __len__(self) -> int:
        return len(self._density) + sum(len(b) for b in self._blocks)

    def extend(self, other: Solids) -> None:
        """Append all solids of ``other``."""
        self._quadrics += other._quadrics
        self._planes += other._planes
        self._density += other._density
        self._box += other._box
        self._blocks += other._blocks

    def add(self, quadrics, planes, density: float, lo: np.ndarray, hi: np.ndarray) -> None:
        """Append one solid: quadrics ``[(centre, metric)]``, planes ``[(normal, h)]``."""
        if density == 0.0:
            return
        if not 1 <= len(quadrics) <= 2 or len(planes) > 6:
            raise ValueError("a solid has one or two quadrics and at most six planes")
        self._quadrics.append(quadrics)
        self._planes.append(planes)
        self._density.append(float(density))
        self._box.append((np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)))

    # ------------------------------------------------------------------ builders

    def ellipsoid(
        self,
        centre: np.ndarray,
        axes: np.ndarray,
        radii: np.ndarray,
        density: float,
        planes: list | None = None,
        cortex: tuple[float, float] | None = None,
        clip: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """An ellipsoid with axes (columns of ``axes``) and ``radii``, optionally cut by planes.

        ``cortex=(thickness, inner_density)`` adds a shrunk inner solid so the outer layer keeps
        ``density``; ``clip`` is a second quadric ``(centre, metric)`` to intersect with.
        """
        centre = np.asarray(centre, dtype=float)
        radii = np.asarray(radii, dtype=float)
        planes = planes or []
        reach = np.sqrt(((axes * radii) ** 2).sum(axis=1))
        for inner, (radius, value) in enumerate(self._layers(radii, density, cortex)):
            metric = (axes / radius).T
            quads = [(centre, metric)] + ([clip] if clip is not None else [])
            cuts = self._inset(planes, cortex[0]) if inner else planes
            self.add(quads, cuts, value, centre - reach, centre + reach)

    def cylinder(
        self,
        p0: np.ndarray,
        p1: np.ndarray,
        radii: tuple[float, float],
        density: float,
        hint: np.ndarray = (1.0, 0.0, 0.0),
        caps: tuple[np.ndarray, np.ndarray] | None = None,
        cortex: tuple[float, float] | None = None,
        planes: list | None = None,
        closed: tuple[bool, bool] = (True, True),
    ) -> None:
        """An elliptic cylinder from ``p0`` to ``p1``; ``radii[0]`` lies along ``hint``.

        ``caps`` are the unit normals of the end planes through ``p0`` and ``p1`` (pointing
        along the axis; default perpendicular), so chained segments can be mitred; ``closed``
        says which ends get a cortical cap (not the inner joints of a tube).
        """
        p0, p1 = np.asarray(p0, dtype=float), np.asarray(p1, dtype=float)
        axes = frame(p1 - p0, np.asarray(hint, dtype=float))
        n0, n1 = (axes[:, 2], axes[:, 2]) if caps is None else caps
        extra = planes or []
        # tight box: the end points pushed out by the tilt of the caps, plus the cross-section
        axis = axes[:, 2]
        ends = []
        for p, n in ((p0, n0), (p1, n1)):
            c = min(max(abs(float(np.dot(n, axis))), 0.2), 1.0)
            slack = max(radii) * np.sqrt(1.0 - c * c) / c
            ends += [p - axis * slack, p + axis * slack]
        ends = np.array(ends)
        reach = np.sqrt((axes[:, 0] * radii[0]) ** 2 + (axes[:, 1] * radii[1]) ** 2)
        lo, hi = ends.min(axis=0) - reach, ends.max(axis=0) + reach
        layers = self._layers(np.array([*radii, 1.0]), density, cortex)
        for inner, (radius, value) in enumerate(layers):
            metric = (axes / radius).T.copy()
            metric[2] = 0.0
            t0 = cortex[0] * closed[0] if inner else 0.0
            t1 = cortex[0] * closed[1] if inner else 0.0
            ends = [(-n0, -np.dot(n0, p0) - t0), (n1, np.dot(n1, p1) - t1)]
            cuts = self._inset(extra, cortex[0]) if inner else extra
            self.add([(p0, metric)], ends + cuts, value, lo, hi)

    def box(
        self,
        centre: np.ndarray,
        axes: np.ndarray,
        half: np.ndarray,
        density: float,
        rounding: float = 1.3,
        cortex: tuple[float, float] | None = None,
    ) -> None:
        """A box (half sizes ``half`` along the ``axes`` columns) with edges rounded off by an
        ellipsoid of radii ``rounding * half`` (1 gives an ellipsoid, >= 1.74 a sharp box)."""
        centre = np.asarray(centre, dtype=float)
        half = np.asarray(half, dtype=float)
        reach = np.minimum(
            np.abs(axes * half).sum(axis=1), np.sqrt(((axes * half * rounding) ** 2).sum(axis=1))
        )
        for size, value in self._layers(half, density, cortex):
            planes = []
            for k in range(3):
                n = axes[:, k]
                planes += [(n, np.dot(n, centre) + size[k]), (-n, -np.dot(n, centre) + size[k])]
            metric = (axes / (size * rounding)).T
            self.add([(centre, metric)], planes, value, centre - reach, centre + reach)

    def tube(
        self,
        points: np.ndarray,
        radii: np.ndarray,
        density: float,
        hint: np.ndarray,
        cortex: tuple[float, float] | None = None,
    ) -> None:
        """A chain of elliptic cylinders along ``points`` (n, 3), mitred at the joints.

        ``radii`` is (n - 1, 2) or (2,): per segment, along ``hint`` (per segment (n - 1, 3) or
        one vector) and across it.
        """
        points = np.asarray(points, dtype=float)
        m = len(points) - 1
        axis = unit(np.diff(points, axis=0))
        joints = np.vstack([axis[:1], unit(axis[:-1] + axis[1:]), axis[-1:]])
        radii = np.broadcast_to(np.asarray(radii, dtype=float), (m, 2))
        hints = np.broadcast_to(np.asarray(hint, dtype=float), (m, 3))
        a = unit(hints - (hints * axis).sum(-1, keepdims=True) * axis)
        b = np.cross(axis, a)
        # bounding boxes: the ends pushed out by the caps' tilt, plus the cross-section
        start, stop = np.abs((joints[:-1] * axis).sum(-1)), np.abs((joints[1:] * axis).sum(-1))
        cos = np.clip(np.minimum(start, stop), 0.2, 1.0)
        slack = (radii.max(axis=1) * np.sqrt(1.0 - cos**2) / cos)[:, None] * np.abs(axis)
        reach = np.sqrt((a * radii[:, :1]) ** 2 + (b * radii[:, 1:]) ** 2)
        lo = np.minimum(points[:-1], points[1:]) - slack - reach
        hi = np.maximum(points[:-1], points[1:]) + slack + reach
        layers = [(radii, density, np.zeros(m), np.zeros(m))]
        if cortex is not None:
            t = cortex[0]
            shrunk = np.maximum(radii - t, 0.3 * radii)
            first, last = np.zeros(m), np.zeros(m)
            first[0], last[-1] = t, t  # only the tube's two ends get a cortical cap
            layers.append((shrunk, cortex[1] - density, first, last))
        for size, value, t0, t1 in layers:
            if value == 0.0:
                continue
            metric = np.zeros((m, 2, 3, 3))
            metric[:, 0, 0], metric[:, 0, 1] = a / size[:, :1], b / size[:, 1:]
            planes = np.zeros((m, 6, 4))
            planes[:, :, 3] = 1.0
            planes[:, 0, :3] = -joints[:-1]
            planes[:, 0, 3] = -(joints[:-1] * points[:-1]).sum(-1) - t0
            planes[:, 1, :3] = joints[1:]
            planes[:, 1, 3] = (joints[1:] * points[1:]).sum(-1) - t1
            centre = np.zeros((m, 2, 3))
            centre[:, 0] = points[:-1]
            self._blocks.append(
                PackedSolids(
                    centre,
                    metric,
                    np.ones(m, dtype=np.int64),
                    planes,
                    np.full(m, 2, dtype=np.int64),
                    np.full(m, float(value)),
                    lo,
                    hi,
                )
            )

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _layers(radii: np.ndarray, density: float, cortex: tuple[float, float] | None):
        """(radii, value) of the outer solid and, with a cortex, of the shrunk inner one."""
        layers = [(radii, density)]
        if cortex is not None:
            thickness, inner = cortex
            shrunk = np.maximum(radii - thickness, 0.3 * radii)
            layers.append((shrunk, inner - density))
        return layers

    @staticmethod
    def _inset(planes: list, thickness: float) -> list:
        """The same half-spaces moved inwards by ``thickness``."""
        return [(n, h - thickness * float(np.linalg.norm(n))) for n, h in planes]

    def packed(self, rotation: np.ndarray | None = None, shift: np.ndarray | None = None):
        """All solids as :class:`PackedSolids`, moved by ``x -> rotation @ x + shift``."""
        n = len(self._density)
        centre = np.zeros((n, 2, 3))
        metric = np.zeros((n, 2, 3, 3))
        planes = np.zeros((n, 6, 4))
        planes[:, :, 3] = 1.0  # padding planes 0 . x <= 1 hold everywhere
        nq = np.array([len(q) for q in self._quadrics], dtype=np.int64)
        nk = np.array([len(p) for p in self._planes], dtype=np.int64)
        for i, (quads, cuts) in enumerate(zip(self._quadrics, self._planes, strict=True)):
            for j, (c, m) in enumerate(quads):
                centre[i, j], metric[i, j] = c, m
            for j, (normal, h) in enumerate(cuts):
                planes[i, j, :3], planes[i, j, 3] = normal, h
        lo = np.array([b[0] for b in self._box]).reshape(n, 3)
        hi = np.array([b[1] for b in self._box]).reshape(n, 3)
        density = np.array(self._density, dtype=float)
        if self._blocks:
            parts = [PackedSolids(centre, metric, nq, planes, nk, density, lo, hi)]
            parts += self._blocks
            centre, metric, nq, planes, nk, density, lo, hi = (
                np.concatenate([getattr(p, name) for p in parts])
                for name in ("centre", "metric", "nq", "planes", "nk", "density", "lo", "hi")
            )
        if rotation is not None:
            rotation = np.asarray(rotation, dtype=float)
            shift = np.zeros(3) if shift is None else np.asarray(shift, dtype=float)
            centre = centre @ rotation.T + shift
            metric = metric @ rotation.T
            normals = planes[:, :, :3] @ rotation.T
            planes = np.concatenate(
                [normals, (planes[:, :, 3] + normals @ shift)[..., None]], axis=-1
            )
            mid, half = (lo + hi) / 2.0, (hi - lo) / 2.0
            reach = half @ np.abs(rotation).T
            mid = mid @ rotation.T + shift
            lo, hi = mid - reach, mid + reach
        return PackedSolids(centre, metric, nq, planes, nk, density, lo, hi)

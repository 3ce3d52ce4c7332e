"""Synthetic training films, made one per seed, optionally by several processes."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import partial
from multiprocessing import get_context

import numpy as np

STYLES = ("flat", "projected", "mixed")


def synth_film(seed: int, style: str = "flat") -> tuple[str, np.ndarray, np.ndarray]:
    """``(name, image, (K, 2) row/col landmarks)`` of the film of ``seed`` in ``style``.

    flat: the 2-D generator; projected: 3-D anatomy through a cone beam, stored as a reader
    shows it (bone bright); mixed: projected for odd seeds, flat for even ones.
    """
    from napari_nfdp.simulator import simulate_projected, synthesize_spine

    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    if style == "projected" or (style == "mixed" and seed % 2 == 1):
        film = simulate_projected(seed, photometric="MONOCHROME2")
    else:
        film = synthesize_spine(seed)
    return f"synth-{seed:06d}", film.image, film.landmarks


def synth_films(
    seeds: Iterable[int], style: str = "flat", workers: int = 1
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """The films of ``seeds`` in order, made by ``workers`` processes (1: in this one)."""
    make = partial(synth_film, style=style)
    if workers <= 1:
        yield from map(make, seeds)
        return
    with get_context("spawn").Pool(workers) as pool:
        yield from pool.imap(make, seeds, chunksize=4)

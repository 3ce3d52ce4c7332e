"""npe2 sample data: a synthetic AP spine radiograph (made on the fly, deterministic)."""

from __future__ import annotations

from typing import Any

SAMPLE_SEED = 2000001  # the seed of sample_data/spine_synthetic_01.png; outside training seeds


def sample_spine() -> list[tuple[Any, dict[str, Any], str]]:
    """A synthetic spine radiograph as a napari Image layer, scaled in mm."""
    from napari_nfdp.simulator import synthesize_spine

    case = synthesize_spine(SAMPLE_SEED)
    meta = {"spacing": case.spacing, "source": f"synthetic spine, seed {SAMPLE_SEED}"}
    return [
        (
            case.image,
            {"name": "synthetic spine", "scale": case.spacing, "metadata": meta},
            "image",
        )
    ]

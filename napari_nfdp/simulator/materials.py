"""Linear attenuation of the tissues (1/mm) for one film's beam quality.

Soft tissue is water; every other value is the difference from water, because the body
outline already fills the patient with water. The numbers are interpolated between about
50 keV and 75 keV effective energy (roughly 70-120 kVp with filtration), after the NIST XCOM
mass attenuation tables for water, ICRU cortical bone, adipose tissue and lung.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Materials:
    """Attenuation values (1/mm) of one film; all but ``water`` are relative to water."""

    water: float
    cortex: float  # cortical bone
    cancellous: float  # vertebral body interior
    marrow: float  # thin cancellous bone (ribs, pelvis, posterior elements)
    cartilage: float
    lung: float
    air: float
    fat: float

    @classmethod
    def random(cls, rng: np.random.Generator) -> Materials:
        """Draw a beam quality (harder beam: less contrast) and a bone density."""
        hard = rng.uniform(0.0, 1.0)
        water = 0.0227 - 0.0045 * hard
        cortex = (0.058 - 0.030 * hard) * rng.uniform(0.8, 1.15)
        density = rng.uniform(0.75, 1.25)  # osteopenic to dense cancellous bone
        return cls(
            water=water,
            cortex=cortex,
            cancellous=cortex * 0.3 * density,
            marrow=cortex * 0.18 * density,
            cartilage=cortex * rng.uniform(0.04, 0.2),
            lung=-water * rng.uniform(0.7, 0.82),
            air=-water,
            fat=-water * rng.uniform(0.07, 0.12),
        )

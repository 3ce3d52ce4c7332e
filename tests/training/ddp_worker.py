"""Run by ``torchrun`` in test_ddp.py: one short DDP training run, then a parameter check."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from napari_nfdp.core.schema import SPINE_LANDMARK_NAMES
from tests.conftest import TINY_INPUT, small_sample
from training.loop import NFDPModel, TrainConfig, train


def main(out: Path) -> None:
    torch.manual_seed(0)
    samples = [small_sample(seed) for seed in range(4)]
    cfg = TrainConfig(input_size=TINY_INPUT, batch_size=1, epochs=1, device="cpu")
    models: list[NFDPModel] = []
    original_init = NFDPModel.__init__

    def remember(self, *args, **kwargs):  # keep a handle on the trained module
        original_init(self, *args, **kwargs)
        models.append(self)

    NFDPModel.__init__ = remember
    best = train(cfg, samples, samples[:1], out, landmark_names=SPINE_LANDMARK_NAMES)
    flat = torch.cat([p.detach().flatten() for p in models[0].parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat)
    rank = dist.get_rank()
    result = {
        "rank": rank,
        "world_size": dist.get_world_size(),
        "max_param_diff": float((gathered[0] - gathered[-1]).abs().max()),
        "best_exists": best.exists(),
    }
    (out / f"rank{rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))

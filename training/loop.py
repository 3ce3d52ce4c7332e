"""The one training loop: NFDP (or a baseline loss) on a landmark network.

Used by ``fit`` (training from scratch), ``finetune`` (few-image refit) and the benchmarks.
It handles augmentation on the fly, the validation split, linear LR decay, resume,
mixed precision on CUDA, DistributedDataParallel under ``torchrun``, progress callbacks
and a cooperative stop flag.
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset

from napari_nfdp.core.atomic import atomic_write
from napari_nfdp.core.checkpoint import save_checkpoint
from napari_nfdp.core.localizer import resolve_device, vertebra_height
from napari_nfdp.core.network import LandmarkNet, ModelConfig
from napari_nfdp.core.preprocess import fit_matrix
from napari_nfdp.core.schema import SPINE_LANDMARK_NAMES
from training.augment import AugmentConfig, augment
from training.datasets import Sample
from training.events import EpochDone, ProgressFn, Started, Step, StopFn
from training.flow import RealNVP
from training.losses import make_loss


class TrainingCancelled(RuntimeError):
    """Raised when ``should_stop`` asked the loop to stop; nothing is published."""


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved with the run and in checkpoints)."""

    variant: str = "regression"
    loss: str = "nfdp"
    input_size: tuple[int, int] = (512, 256)
    fit_fraction: float = 0.9
    pyramid_fusion: bool = False
    epochs: int = 100
    batch_size: int = 8
    lr: float | None = None  # None: 1e-3 for regression, 8e-4 for heatmap (reference)
    lr_end_factor: float = 0.01
    seed: int = 0
    amp: bool = True  # used on CUDA only
    device: str | None = None
    num_workers: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # keep the starting model's BatchNorm statistics (fine-tuning on a few films: statistics
    # re-estimated on ten chest films took a model from 0.73 % to 7.2 % on other chest films)
    freeze_batchnorm: bool = False

    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        return 8e-4 if self.variant == "heatmap" else 1e-3

    def model_config(self, num_landmarks: int) -> ModelConfig:
        return ModelConfig(
            variant=self.variant,
            num_landmarks=num_landmarks,
            input_size=tuple(self.input_size),
            pyramid_fusion=self.pyramid_fusion,
            fit_fraction=self.fit_fraction,
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        d = dict(d)
        d["augment"] = AugmentConfig(**d.get("augment", {}))
        d["input_size"] = tuple(d.get("input_size", (512, 256)))
        return cls(**d)


class _AugmentedSamples(Dataset):
    """Samples turned into network inputs; random augmentation per (seed, epoch, index)."""

    def __init__(
        self,
        samples: Sequence[Sample],
        model_config: ModelConfig,
        aug: AugmentConfig,
        train: bool,
        seed: int,
    ) -> None:
        self.samples = samples
        self.model_config = model_config
        self.aug = aug
        self.train = train
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        rng = np.random.default_rng([self.seed, self.epoch, index])
        image, target, visible = augment(
            self.samples[index], rng, self.model_config, self.aug, train=self.train
        )
        return (
            torch.from_numpy(np.ascontiguousarray(image))[None],
            torch.from_numpy(np.asarray(target, dtype=np.float32)),
            torch.from_numpy(np.asarray(visible, dtype=np.float32)),
        )


class NFDPModel(nn.Module):
    """The network and the flow prior in one module, so one DDP wrapper syncs both."""

    def __init__(self, net: LandmarkNet, flow: RealNVP, loss_kind: str) -> None:
        super().__init__()
        self.net = net
        self.flow = flow
        self.loss_fn = make_loss(loss_kind, flow)

    def forward(self, images: torch.Tensor, target: torch.Tensor, visible: torch.Tensor):
        mu, sigma = self.net(images)
        with torch.autocast(device_type=images.device.type, enabled=False):
            return self.loss_fn(mu.float(), sigma.float(), target, visible)


@dataclass
class _Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _init_distributed(device_kind: str) -> _Distributed:
    """Join the process group that ``torchrun`` describes in the environment, if any."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return _Distributed()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    return _Distributed(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


def training_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    use_amp: bool,
) -> float:
    """One optimisation step of an :class:`NFDPModel` (or its DDP wrapper); returns the loss."""
    images = batch[0]
    with torch.autocast(device_type=images.device.type, dtype=torch.float16, enabled=use_amp):
        loss = model(*batch)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return float(loss.detach())


def _training_device(name: str | None, world: _Distributed) -> torch.device:
    """The requested (or best available) device; one GPU per process under DDP."""
    device = resolve_device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", world.local_rank)
    return device


def _percent_of_height(samples: Sequence[Sample], model_config: ModelConfig) -> np.ndarray:
    """Per sample: network-input pixels that one percent of the image height spans."""
    return np.array(
        [
            fit_matrix(s.image.shape, model_config.input_size, model_config.fit_fraction)[0, 0]
            * s.image.shape[0]
            / 100.0
            for s in samples
        ]
    )


BN_CALIBRATION_IMAGES = 64


def freeze_batchnorm(net: nn.Module) -> None:
    """Put ``net``'s BatchNorm layers in eval mode (its other layers stay as they are): training
    then normalises with, and leaves unchanged, the statistics the model already has."""
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


@torch.no_grad()
def recalibrate_batchnorm(
    net: LandmarkNet,
    samples: Sequence[Sample],
    model_config: ModelConfig,
    device: torch.device,
    batch_size: int = 8,
) -> None:
    """Recompute BatchNorm running statistics on un-augmented ``samples`` ("precise BN").

    The running averages collected during training lag the weights and mix in heavily
    augmented images; measured on the first synthetic run, they doubled the validation error
    against statistics recomputed on clean images, which is what inference sees.
    """
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or not samples:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    data = _AugmentedSamples(samples, model_config, AugmentConfig(), train=False, seed=0)
    was_training = net.training
    net.train()
    for images, _, _ in DataLoader(data, batch_size=batch_size, shuffle=False):
        net(images.to(device))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    net.train(was_training)


class Validation(NamedTuple):
    """Validation metrics in percent of the image height, and sigma in vertebra heights."""

    mre_pct: float  # mean radial error over visible landmarks
    sigma_pct: float  # median predicted sigma: the model's typical uncertainty on real films
    sigma_vertebrae: float = float("nan")  # the same in vertebra heights (spine models)


@torch.inference_mode()
def validate(
    net: LandmarkNet,
    samples: Sequence[Sample],
    model_config: ModelConfig,
    device: torch.device,
    batch_size: int = 8,
) -> Validation:
    """Mean radial error and median sigma on ``samples`` (NaN landmarks skipped); for a
    68-landmark spine model also the median sigma over each film's predicted vertebra height
    (what :func:`napari_nfdp.core.localizer.usual_sigma_px` compares with)."""
    if not samples:
        return Validation(float("nan"), float("nan"))
    spine = model_config.num_landmarks == len(SPINE_LANDMARK_NAMES)
    data = _AugmentedSamples(samples, model_config, AugmentConfig(), train=False, seed=0)
    loader = DataLoader(data, batch_size=batch_size, shuffle=False)
    size = torch.tensor(model_config.input_size, dtype=torch.float32, device=device)
    per_pct = torch.as_tensor(_percent_of_height(samples, model_config), device=device)
    was_training = net.training
    net.eval()
    total, count, start, sigmas, per_vertebra = 0.0, 0, 0, [], []
    for images, target, visible in loader:
        mu, sigma = net(images.to(device))
        pct = per_pct[start : start + len(images), None]
        err = torch.linalg.norm((mu.float() - target.to(device)) * size, dim=-1) / pct
        vis = visible.to(device)
        total += float((err * vis).sum())
        count += int(vis.sum())
        sigma_px = (sigma.float() * size).mean(dim=-1)
        sigmas.append((sigma_px / pct)[vis > 0])
        if spine:  # the film's vertebra height as the localizer measures it, in input pixels
            points = (mu.float() * size).cpu().numpy()
            heights = [vertebra_height(p, SPINE_LANDMARK_NAMES) or math.nan for p in points]
            heights_t = torch.tensor(heights, dtype=torch.float32, device=device)[:, None]
            per_vertebra.append((sigma_px / heights_t)[vis > 0])  # NaN: no height, skipped
        start += len(images)
    net.train(was_training)
    if not count:
        return Validation(float("nan"), float("nan"))
    vertebrae = float(torch.cat(per_vertebra).nanmedian()) if per_vertebra else float("nan")
    return Validation(total / count, float(torch.cat(sigmas).median()), vertebrae)


def _calibration_indices(n: int, seed: int) -> list[int]:
    """A fixed, seeded subset of the training images for BatchNorm recalibration."""
    order = np.random.default_rng(seed).permutation(n)
    return sorted(order[:BN_CALIBRATION_IMAGES].tolist())


def _split_batches(n: int, batch_size: int, world: _Distributed) -> int:
    per_rank = math.ceil(n / world.world_size)
    return max(1, math.ceil(per_rank / batch_size))


def _make_loader(data: _AugmentedSamples, cfg: TrainConfig, world: _Distributed, epoch: int):
    generator = torch.Generator().manual_seed(cfg.seed * 100003 + epoch)
    order = torch.randperm(len(data), generator=generator).tolist()
    per_rank = math.ceil(len(order) / world.world_size)
    order = (order * world.world_size)[: per_rank * world.world_size]  # pad evenly
    shard = order[world.rank :: world.world_size]
    return DataLoader(
        torch.utils.data.Subset(data, shard),
        batch_size=cfg.batch_size,
        shuffle=False,
        drop_last=False,
        num_workers=cfg.num_workers,
    )


def train(
    cfg: TrainConfig,
    train_samples: Sequence[Sample],
    val_samples: Sequence[Sample],
    out_dir: str | Path,
    *,
    landmark_names: Sequence[str],
    init: tuple[dict, dict | None] | None = None,
    backbone_weights: str | Path | None = None,
    resume: bool = False,
    keep_resume_state: bool = True,
    data_summary: dict[str, Any] | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> Path:
    """Train and return the path of the best checkpoint (selected on ``val_samples``).

    ``init`` is (model_state, flow_state) to start from (fine-tuning). The run folder
    holds ``config.json``, ``log.jsonl``, ``best.pt`` and, with ``keep_resume_state``,
    ``last.pt`` (weights + optimizer, for ``resume``). ``progress`` receives
    :mod:`training.events` (``Started``, then ``Step`` and ``EpochDone``) on the main rank.
    """
    if not train_samples:
        raise ValueError("no training images")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    world = _init_distributed("cuda" if torch.cuda.is_available() else "cpu")
    device = _training_device(cfg.device, world)
    model_config = cfg.model_config(len(landmark_names))

    net = LandmarkNet(model_config)
    flow = RealNVP()
    if init is not None:
        net.load_state_dict(init[0])
        if init[1] is not None:
            flow.load_state_dict(init[1])
    elif backbone_weights is not None:
        from napari_nfdp.core.backbone import load_imagenet_weights

        load_imagenet_weights(net.backbone, backbone_weights)
    model = NFDPModel(net, flow, cfg.loss).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate())
    end = cfg.lr_end_factor
    epochs = max(1, cfg.epochs)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda e: 1.0 - (1.0 - end) * min(e, epochs - 1) / max(1, epochs - 1)
    )
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    run_id = uuid.uuid4().hex[:12]
    start_epoch, best = 0, float("inf")
    last_path, best_path = out / "last.pt", out / "best.pt"
    if resume and last_path.exists():
        state = torch.load(last_path, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, best, run_id = state["epoch"] + 1, state["best"], state["run_id"]
    if world.is_main:
        (out / "config.json").write_text(
            json.dumps({"run_id": run_id, "train": cfg.to_dict(), "data": data_summary}, indent=2)
        )

    ddp_model: nn.Module = model
    if world.enabled:
        ddp_model = nn.parallel.DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=cfg.loss in ("l1", "l2"),  # these leave the flow unused
        )

    data = _AugmentedSamples(train_samples, model_config, cfg.augment, train=True, seed=cfg.seed)
    calibration = [train_samples[i] for i in _calibration_indices(len(train_samples), cfg.seed)]
    steps = _split_batches(len(train_samples), cfg.batch_size, world)
    emit = progress if (progress is not None and world.is_main) else (lambda event: None)
    emit(Started(run_id=run_id, epochs=epochs, steps_per_epoch=steps))
    for epoch in range(start_epoch, epochs):
        data.epoch = epoch + 1000 * world.rank
        model.train()
        if cfg.freeze_batchnorm:
            freeze_batchnorm(net)
        losses, t0 = [], time.perf_counter()
        for step, (images, target, visible) in enumerate(_make_loader(data, cfg, world, epoch)):
            if should_stop is not None and should_stop():
                raise TrainingCancelled(f"training stopped at epoch {epoch + 1}, step {step}")
            batch = (images.to(device), target.to(device), visible.to(device))
            losses.append(training_step(ddp_model, optimizer, scaler, batch, use_amp))
            emit(Step(epoch=epoch + 1, step=step + 1, loss=losses[-1]))
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        if not cfg.freeze_batchnorm:
            recalibrate_batchnorm(net, calibration, model_config, device, cfg.batch_size)
        val, val_sigma, val_sigma_vertebrae = validate(
            net, val_samples, model_config, device, cfg.batch_size
        )
        train_loss = float(np.mean(losses))
        improved = not math.isnan(val) and val < best
        record = {
            "epoch": epoch + 1,
            "epochs": epochs,
            "loss": train_loss,
            "val_mre_pct": val,
            "lr": lr,
            "seconds": time.perf_counter() - t0,
            "best": improved,
        }
        if world.is_main:
            if improved or (math.isnan(val) and epoch == epochs - 1) or not best_path.exists():
                best = val if improved else best
                save_checkpoint(
                    best_path,
                    net,
                    landmark_names=tuple(landmark_names),
                    flow_state=flow.state_dict(),
                    training={
                        "run_id": run_id,
                        "epoch": epoch + 1,
                        "config": cfg.to_dict(),
                        "data": data_summary or {},
                    },
                    metrics={
                        "val_mre_pct": val,
                        "val_sigma_pct": val_sigma,
                        **(
                            {"val_sigma_vertebrae": val_sigma_vertebrae}
                            if math.isfinite(val_sigma_vertebrae)
                            else {}
                        ),
                        "train_loss": train_loss,
                    },
                )
            if keep_resume_state:
                _save_last(last_path, model, optimizer, scheduler, scaler, epoch, best, run_id)
            with (out / "log.jsonl").open("a") as log:
                log.write(json.dumps(record) + "\n")
        emit(EpochDone(**record))
    if world.enabled:
        dist.barrier()
    return best_path


def _save_last(path: Path, model, optimizer, scheduler, scaler, epoch, best, run_id) -> None:
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": epoch,
        "best": best,
        "run_id": run_id,
    }
    atomic_write(path, lambda stream: torch.save(state, stream))

"""The Vesuvius track as an engine task: config, model, datasets, device-side features, loss, metrics.

Data source convention: ``data.root`` names the Kaggle-layout folder; an empty ``root``
means synthetic scrolls, generated on first use from ``data.synthetic`` (volumes, size,
seed, scrolls) into ``core.paths.cache_dir("vesuvius", "synthetic", ...)`` and reused. The
synthetic scroll ids are 90001, 90002, ... (so ``data.val_scrolls`` can hold one out).
"""
from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator

from core.config import RunConfig, Section, TrainerConfig
from core.errors import UserError
from core.paths import cache_dir
from core.task import Task
from tasks.vesuvius import data as vdata
from tasks.vesuvius.features import CHANNELS, FEATURES, context_margin
from tasks.vesuvius.inference import model_input, run_probs
from tasks.vesuvius.losses import IGNORE, segmentation_loss
from tasks.vesuvius import topology
from tasks.vesuvius.metrics import leaderboard_score
from tasks.vesuvius.model import UNet3D

SYNTH_VERSION = 2  # bump when synth.py changes what it generates (new cache folder)


class SyntheticData(Section):
    """Synthetic scrolls generated when ``data.root`` is empty."""

    volumes: int = Field(9, ge=2)
    size: int = Field(64, ge=16)
    seed: int = 0
    scrolls: int = Field(3, ge=1)


class DataConfig(Section):
    root: str = Field("data/vesuvius-challenge-surface-detection", description='Kaggle-layout folder; "" = synthetic')
    synthetic: SyntheticData = Field(default_factory=SyntheticData)
    on_bad_volume: Literal["error", "skip"] = "error"
    val_scrolls: list[str] = Field(default_factory=list, description="scroll ids held out for validation")
    val_fraction: float = Field(0.1, ge=0, lt=1, description="used when val_scrolls is empty")
    patch_size: int = Field(128, ge=8)
    surface_fraction: float = Field(0.67, ge=0, le=1, description="share of patches centred on surface voxels")
    samples_per_volume: int = Field(4, ge=1, description="training patches per volume per epoch")
    max_surface_points: int = Field(32768, ge=1, description="surface coordinates kept per volume (int16)")


class FeaturesConfig(Section):
    channels: list[str] = Field(default_factory=lambda: list(FEATURES))

    @field_validator("channels")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        bad = [c for c in v if c not in CHANNELS]
        if bad or not v:
            raise ValueError(f"unknown or no channels {bad}; valid: {', '.join(CHANNELS)}")
        return v


class ModelConfig(Section):
    width: int = Field(32, ge=1)
    depth: int = Field(6, ge=1)
    max_width: int = Field(280, ge=1)
    norm: Literal["instance", "group"] = "instance"
    residual: bool = True


class LossConfig(Section):
    ce_weight: float = Field(1.0, ge=0)
    dice_weight: float = Field(1.0, ge=0)
    cldice_weight: float = Field(0.5, ge=0)
    class_weights: list[float] = Field(default_factory=lambda: [1.0, 1.0], min_length=2, max_length=2)
    label_smoothing: float = Field(0.01, ge=0, lt=1)
    cldice_iterations: int = Field(3, ge=1)


class AugmentConfig(Section):
    flips: bool = True
    quarter_turns: bool = True
    intensity_scale: float = Field(0.1, ge=0, description="x * (1 + U(-s, s))")
    intensity_shift: float = Field(0.05, ge=0, description="x + U(-s, s)")


class EvalConfig(Section):
    overlap: float = Field(0.5, ge=0, lt=1)
    mirror_tta: bool = False
    threshold: float = Field(0.5, gt=0, lt=1)
    windows_per_batch: int = Field(2, ge=1)
    tolerance: float = Field(2.0, ge=0)
    monitor: Literal["auto", "score", "topo_score", "surface_dice", "voi_score", "loss"] = Field(
        "auto", description='metric that picks best.pt; "auto" = the leaderboard score where TopoScore can be '
                            'computed, else surface_dice')


class PostprocessConfig(Section):
    """Tuning of tasks/vesuvius/postprocess.py at the end of training (on best.pt)."""

    tune: bool = True
    # each candidate (up to 17) scores every tuning volume: a 192^3 crop takes ~18 s on 2 CPU
    # cores (TopoScore dominates), so 4 volumes cost about 20 minutes at the end of a real run
    tune_volumes: int = Field(4, ge=1, description="validation volumes tuned on")
    tune_crop: int = Field(192, ge=16, description="centre crop side scored (TopoScore of 320^3 takes minutes)")
    tune_threshold: Literal["auto", "on", "off"] = Field(
        "auto", description='"auto": tune the threshold only when the validation volumes span >= 2 scrolls')


class Config(RunConfig):
    trainer: TrainerConfig = Field(
        default_factory=lambda: TrainerConfig(
            max_epochs=200, batch_size=2, lr=1e-3, weight_decay=3e-5, warmup_steps=200, precision="auto", num_workers=4
        )
    )
    data: DataConfig = Field(default_factory=DataConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    postprocess: PostprocessConfig = Field(default_factory=PostprocessConfig)

    @model_validator(mode="after")
    def _patch_fits_the_unet(self) -> "Config":
        divisor = 2 ** (self.model.depth - 1)
        if self.data.patch_size % divisor:
            raise ValueError(f"data.patch_size {self.data.patch_size} must be divisible by 2**(model.depth-1) = {divisor}")
        return self


def synthetic_root(s: SyntheticData) -> Path:
    """Generate (once) and return the synthetic dataset folder for these settings."""
    from tasks.vesuvius.synth import generate

    name = f"v{SYNTH_VERSION}-n{s.volumes}-s{s.size}-seed{s.seed}-scrolls{s.scrolls}"
    root = cache_dir("vesuvius", "synthetic") / name
    if (root / "train.csv").is_file():
        return root
    tmp = root.with_name(f"{name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    generate(tmp, s.volumes, s.size, s.seed, s.scrolls, progress=False)
    try:
        os.replace(tmp, root)  # atomic: a half-written dataset is never seen
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def resolve_root(d: DataConfig) -> Path:
    return synthetic_root(d.synthetic) if d.root == "" else Path(d.root).expanduser()


class VesuviusTask(Task):
    name = "vesuvius"
    description = "3D scroll-surface segmentation (Vesuvius Challenge): on-device features, 3D U-Net"
    Config = Config
    monitor = ("score", "max")  # eval.monitor chooses (monitored)
    inference_module = "tasks.vesuvius.predict"
    smoke_config = "configs/vesuvius/smoke.toml"

    # ---------------------------------------------------------------- builders

    def build_model(self, cfg: Config) -> torch.nn.Module:
        m = cfg.model
        return UNet3D(len(cfg.features.channels), 2, m.width, m.depth, m.max_width, m.norm, m.residual)

    def build_datasets(self, cfg: Config) -> tuple[Any, Any]:
        d = cfg.data
        root = resolve_root(d)
        volumes = vdata.check_dataset(root, d.on_bad_volume, d.max_surface_points)
        train, val = vdata.split(volumes, d.val_scrolls, d.val_fraction, cfg.trainer.seed)
        margin = context_margin(cfg.features.channels)
        train_ds = vdata.PatchDataset(train, d.patch_size, margin, d.surface_fraction, d.samples_per_volume, cfg.trainer.seed)
        cfg.eval.monitor = resolve_monitor(cfg.eval.monitor)  # recorded in config.json: a resume keeps it
        return train_ds, vdata.VolumeDataset(val)

    def after_training(self, cfg: Config, best_checkpoint: Path, device: torch.device) -> dict[str, Any]:
        """Tune post-processing on the validation volumes and store it in best.pt's meta."""
        if not cfg.postprocess.tune:
            return {}
        from tasks.vesuvius.postprocess import tune_checkpoint

        started = time.perf_counter()
        result = tune_checkpoint(best_checkpoint, str(device), log=lambda line: print(line, file=sys.stderr))
        print(f"post-processing tuned by {result['objective']} on {result['volumes']} validation volume(s), stored in "
              f"{best_checkpoint}: {result['params']}", file=sys.stderr)
        return {"postprocess": {**result, "seconds": round(time.perf_counter() - started, 1)}}

    def monitored(self, cfg: Config) -> tuple[str, str]:
        name = resolve_monitor(cfg.eval.monitor, quiet=True)
        return name, "min" if name == "loss" else "max"

    def val_batch_size(self, cfg: Config, train_batch_size: int) -> int:
        return 1  # validation items are whole volumes of varying shape

    def example_batch(self, cfg: Config, batch_size: int, extent: dict[str, Any],
                      rank: int = 0) -> dict[str, torch.Tensor]:
        """Training patches are all the configured size (plus the features' context margin),
        so every ``rank`` is the same batch."""
        p = cfg.data.patch_size
        full = p + 2 * context_margin(cfg.features.channels)
        g = torch.Generator().manual_seed(0)
        return {
            "image": torch.randint(0, 256, (batch_size, 1, full, full, full), dtype=torch.uint8, generator=g),
            "label": torch.randint(0, 3, (batch_size, p, p, p), dtype=torch.uint8, generator=g),
        }

    # ---------------------------------------------------------------- device side

    def checkpoint_meta(self, cfg: Config) -> dict[str, Any]:
        return {"channels": list(cfg.features.channels), "patch_size": cfg.data.patch_size}

    def inference_example(self, cfg: Config, folder: Path) -> list[str]:
        """The first validation volume as a TIFF, for ``predict``."""
        _, val = self.build_datasets(cfg)
        image = val[0]["image"][0].numpy()  # (D, H, W) uint8
        from tasks.vesuvius.synth import write_tiff

        write_tiff(folder / "volume.tif", image)
        return ["--input", str(folder / "volume.tif"), "--output", str(folder / "mask.tif"), "--device", "cpu"]

    def to_device(self, cfg: Config, batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
        """Training batch -> {"input": (B, C, P, P, P) float features, "label": (B, P, P, P) long}.

        Augmentation (torch's global RNG, so a resumed run continues the stream) on the raw
        patch before the features, which are equivariant to flips and quarter turns.
        """
        image = batch["image"].to(device, non_blocking=True)  # (B, 1, P+2m, ...) uint8
        label = batch["label"].to(device, non_blocking=True).long()  # (B, P, P, P), 2 = ignore
        image, label = augment_geometry(cfg.augment, image, label)
        x = image.float() / 255.0
        a = cfg.augment
        if a.intensity_scale or a.intensity_shift:
            n = x.shape[0]
            scale = 1 + (torch.rand(n, 1, 1, 1, 1, device=device) * 2 - 1) * a.intensity_scale
            shift = (torch.rand(n, 1, 1, 1, 1, device=device) * 2 - 1) * a.intensity_shift
            x = (x * scale + shift).clamp(0, 1)
        channels = cfg.features.channels
        margin = context_margin(channels)
        feats = model_input(x, channels, margin)  # (B, C, P, P, P) float32
        return {"input": feats, "label": label}

    def loss(self, cfg: Config, model: torch.nn.Module,
             batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        logits = model(batch["input"])  # (B, 2, P, P, P), maybe half under autocast
        return segmentation_loss(logits.float(), batch["label"], cfg.loss)

    # ---------------------------------------------------------------- evaluation

    def evaluate(self, cfg: Config, model: torch.nn.Module, loader: Any) -> dict[str, float]:
        """Sliding window over each whole validation volume; metrics averaged over volumes.

        Returns surface_dice (tolerance eval.tolerance), voi_score and, where Betti matching
        is installed (tasks/vesuvius/topology.py), topo_score and score (the leaderboard's
        0.30 / 0.35 / 0.35 mix, per volume, then averaged); and loss: the cross-entropy of the
        blended probabilities on labelled voxels (the training loss needs logits, which
        blending does not keep).
        """
        scores: dict[str, list[float]] = {}
        losses = []
        with_topology = topology.available()
        was_training = model.training
        model.eval()
        for batch in loader:
            for image, label in zip(batch["image"], batch["label"]):  # (1, D, H, W), (D, H, W)
                label = label.numpy()
                prob = run_probs(model, cfg, image[0].numpy())
                pred = (prob > cfg.eval.threshold).astype(np.uint8)
                result = leaderboard_score(pred, label, IGNORE, cfg.eval.tolerance, topology=with_topology)
                for key in ("score", "topo_score", "surface_dice", "voi_score"):
                    if result[key] is not None:
                        scores.setdefault(key, []).append(result[key])
                valid = label != IGNORE
                p_true = np.where(label == 1, prob, 1 - prob)[valid]
                losses.append(float(-np.log(np.clip(p_true, 1e-6, 1)).mean()) if p_true.size else 0.0)
        model.train(was_training)
        if not losses:  # the engine refuses an empty validation set; never report zeros as scores
            keys = ("score", "topo_score") * with_topology + ("surface_dice", "voi_score", "loss")
            return {k: float("nan") for k in keys}
        return {**{k: float(np.mean(v)) for k, v in scores.items()}, "loss": float(np.mean(losses))}


def resolve_monitor(name: str, quiet: bool = False) -> str:
    """``eval.monitor`` made concrete: "auto" is the leaderboard score where TopoScore can be
    computed, else surface_dice (saying why, unless ``quiet``). A topology metric asked for
    where it cannot be computed is a config error."""
    why = topology.unavailable_reason()
    if name == "auto":
        if why and not quiet:
            print(f"vesuvius: {why}; validation monitors surface_dice", file=sys.stderr)
        return "surface_dice" if why else "score"
    if name in ("score", "topo_score") and why:
        raise UserError(f"eval.monitor = {name!r} needs TopoScore: {why}. Install it, or set "
                        f"eval.monitor = \"surface_dice\"")
    return name


def augment_geometry(a: AugmentConfig, image: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Random flips and quarter turns per sample (torch's global RNG): image (B, 1, S, S, S), label (B, P, P, P)."""
    if not (a.flips or a.quarter_turns):
        return image, label
    out_i, out_l = [], []
    for img, lab in zip(image, label):  # per sample: (1, S, S, S) and (P, P, P)
        if a.flips:
            for axis in range(3):
                if torch.rand(()) < 0.5:
                    img, lab = img.flip(axis + 1), lab.flip(axis)
        if a.quarter_turns:
            k = int(torch.randint(0, 4, ()))
            plane = [(0, 1), (0, 2), (1, 2)][int(torch.randint(0, 3, ()))]
            img = torch.rot90(img, k, (plane[0] + 1, plane[1] + 1))
            lab = torch.rot90(lab, k, plane)
        out_i.append(img)
        out_l.append(lab)
    return torch.stack(out_i), torch.stack(out_l)

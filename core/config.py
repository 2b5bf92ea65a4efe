"""Typed run configuration: pydantic models, TOML loading and ``--set`` overrides.

A run's config is one pydantic model per task (``task.Config``) that subclasses
:class:`RunConfig`; each section is its own model, owned by the component that uses it
(``trainer`` here, ``data``/``model``/``loss`` in the task). Unknown keys are errors.

The resolved config (file + overrides + values the engine chooses, such as an automatic
batch size) is the run's identity: it is written to ``config.json`` and every checkpoint.

Every mistake a user can make here raises :class:`ConfigError` with one line naming the
file, the key and what was expected; the CLI turns it into exit status 2.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Literal, Sequence

from core.errors import UserError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib


class ConfigError(UserError):
    """A user-facing configuration mistake (exit status 2, one line, no traceback)."""


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TrainerConfig(Section):
    """Settings of the engine's loop (``[trainer]``); read by core/trainer.py."""

    max_epochs: int = Field(10, ge=1)
    max_steps: int = Field(0, ge=0, description="optimizer steps; 0 = no cap")
    batch_size: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(8, description="per process; 'auto' = measured")
    batch_size_reason: str = Field("set in the config", description="filled in by the engine")
    grad_accum_steps: int = Field(1, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    lr_schedule: Literal["cosine", "onecycle", "constant"] = "cosine"
    warmup_steps: int = Field(0, ge=0)
    min_lr_ratio: float = Field(0.01, ge=0, le=1)
    grad_clip: float = Field(1.0, ge=0, description="max grad norm; 0 = no clipping")
    precision: Literal["fp32", "fp16", "bf16", "auto"] = "auto"
    seed: int = 0
    num_workers: int = Field(0, ge=0)
    prefetch_factor: int = Field(2, ge=1)
    evaluate: bool = Field(True, description="false: no validation (an empty val set is then allowed; no best.pt)")
    eval_every_steps: int = Field(0, ge=0, description="0 = at the end of every epoch")
    checkpoint_every_steps: int = Field(0, ge=0, description="0 = at the end of every epoch")
    log_every_steps: int = Field(10, ge=1)
    keep_last: int = Field(2, ge=1)
    nonfinite_policy: Literal["skip", "raise"] = "skip"
    max_consecutive_nonfinite: int = Field(20, ge=1)
    compile: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"
    memory_safety_margin: float = Field(0.85, gt=0, le=1)
    instance: str | None = Field(None, description="instance type from configs/instances.toml")


class RunConfig(Section):
    """Base of every task's ``Config``. Tasks add their own sections (data, model, loss...)."""

    trainer: TrainerConfig = Field(default_factory=TrainerConfig)


# ----------------------------------------------------------------------------- loading


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file, raising ConfigError for a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist (pass an existing TOML file to --config)")
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``"trainer.lr=3e-4"`` into (["trainer", "lr"], value).

    The value is parsed as a TOML value when it is one (numbers, booleans, quoted strings,
    arrays); otherwise it is taken as a bare string, so ``--set data.root=/data/vesuvius``
    works without quotes. Pydantic then checks the type against the model.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text!r}: expected key.path=value, e.g. --set trainer.lr=3e-4")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.split("."), value


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Merge ``update`` into ``base`` in place, section by section."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_merge(base[key], value)
        else:
            base[key] = value
    return base


def set_path(tree: dict[str, Any], path: list[str], value: Any, origin: str) -> None:
    node = tree
    for i, part in enumerate(path[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{origin}: {'.'.join(path[: i + 1])} is a value, not a section")
        node = child
    node[path[-1]] = value


def _field_path(loc: tuple) -> str:
    """``("trainer", "batch_size", "constrained-int")`` -> "trainer.batch_size" (drop union branches)."""
    parts = [str(p) for p in loc if isinstance(p, int) or str(p).isidentifier()]
    return ".".join(parts)


def _describe_errors(errors: list[dict[str, Any]]) -> tuple[str, int]:
    """One line for the first wrong key (a union's alternatives joined with "or"), and how many
    other keys are wrong."""
    keys = list(dict.fromkeys(_field_path(tuple(e["loc"])) for e in errors))
    first = [e for e in errors if _field_path(tuple(e["loc"])) == keys[0]]
    kind = first[0]["type"]
    if kind == "extra_forbidden":
        return f"unknown key {keys[0]!r}", len(keys) - 1
    if kind == "missing":
        return f"missing key {keys[0]!r}", len(keys) - 1
    expected = " or ".join(dict.fromkeys(e["msg"].lower().removeprefix("input ") for e in first))
    got = first[0].get("input")
    got_text = f" (got {got!r})" if not isinstance(got, dict) else ""
    return f"key {keys[0]!r}: {expected}{got_text}", len(keys) - 1


def _nearest_key(model: type[BaseModel], loc: tuple) -> str:
    """Suggest the valid keys of the section that holds an unknown key."""
    section: Any = model
    for part in loc[:-1]:
        field = getattr(section, "model_fields", {}).get(part)
        if field is None:
            return ""
        section = field.annotation
    names = sorted(getattr(section, "model_fields", {}))
    return f"; valid keys here: {', '.join(names)}" if names else ""


def validate(model: type[BaseModel], tree: dict[str, Any], origin: str) -> Any:
    """Validate a nested dict against a model (a task's Config or any section); the first
    mistake is raised as one line naming ``origin`` and the key."""
    try:
        return model.model_validate(tree)
    except ValidationError as e:
        errors = e.errors()
        line, others = _describe_errors(errors)
        hint = _nearest_key(model, tuple(errors[0]["loc"])) if errors[0]["type"] == "extra_forbidden" else ""
        more = f" (and {others} more)" if others else ""
        raise ConfigError(f"{origin}: {line}{hint}{more}") from None


def load(task: Any, config_path: str | Path | None = None, overrides: Sequence[str] = ()) -> RunConfig:
    """Resolve a task's config: built-in defaults <- TOML file <- ``--set`` overrides.

    ``task`` is a task instance or a task name (looked up in the registry). Without
    ``config_path`` the task's built-in defaults apply (equal to configs/<task>/default.toml).
    """
    if isinstance(task, str):
        from core.registry import get_task

        task = get_task(task)
    # The task's defaults are the base: a file or --set that names one key of a section keeps
    # the task's other values in that section (not the section class's generic defaults).
    tree = task.Config().model_dump(mode="json")
    if config_path:
        deep_merge(tree, read_toml(config_path))
    return validate_with_overrides(task, tree, str(config_path) if config_path else "built-in defaults", overrides)


def validate_with_overrides(task: Any, tree: dict[str, Any], origin: str, overrides: Sequence[str]) -> RunConfig:
    """Apply ``--set`` strings to a config tree (changed in place) and validate it against the
    task's Config; errors name ``origin`` and the overrides."""
    for text in overrides:
        path, value = parse_override(text)
        set_path(tree, path, value, f"--set {text!r}")
    if overrides:
        origin += " + --set " + " ".join(overrides)
    return validate(task.Config, tree, origin)


def to_json(cfg: RunConfig) -> str:
    return json.dumps(cfg.model_dump(mode="json"), indent=2, sort_keys=False)


def from_dict(task: Any, tree: dict[str, Any], origin: str) -> RunConfig:
    """Rebuild a config saved in config.json or a checkpoint."""
    return validate(task.Config, tree, origin)


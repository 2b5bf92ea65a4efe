"""``train <task> ...``: parse, resolve the config, dispatch to core.trainer.fit.

Exit status: 0 done (also after a clean stop on SIGTERM/SIGINT), 2 bad usage, config or
data (one line on stderr, no traceback), 1 anything else (a diverged run included).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence

from core import process_env, registry
from core.errors import EXIT_USER_ERROR, UserError

USAGE = "train <task> [--config FILE] [--set key.path=value]... [--run-dir DIR] [--resume] [--device auto|cpu|cuda]"


def _general_help() -> str:
    lines = [f"usage: {USAGE}", "", "Train a registered task on the shared engine.", "", "tasks:"]
    for name, description in registry.describe():
        lines.append(f"  {name:<12} {description}")
    lines += ["", "Run `train <task> --help` for the flags of one task."]
    return "\n".join(lines)


def build_parser(task) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"train {task.name}", description=task.description)
    parser.add_argument("--config", type=Path, help="TOML config (default: the built-in defaults, "
                        f"equal to configs/{task.name.replace('-', '_')}/default.toml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override one config value, e.g. --set trainer.lr=3e-4 (repeatable)")
    parser.add_argument("--run-dir", type=Path, help=f"run directory (default: runs/{task.name}/<timestamp>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last checkpoint")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="training device (trainer.device)")
    parser.add_argument("--instance", help="cloud instance type from configs/instances.toml (sizes the batch)")
    for flag, (key, kind, help_text) in task.cli_options.items():
        metavar = key.rsplit(".", 1)[-1].upper()  # data.max_samples -> MAX_SAMPLES
        parser.add_argument(flag, dest=f"opt:{key}", type=kind, metavar=metavar, help=f"{help_text} ({key})")
    return parser


def resolve_config(task, args: argparse.Namespace):
    """Built-in defaults <- --config (or, on --resume, the run's config.json) <- flags <- --set."""
    from core import config as config_io

    overrides = [f"{name[4:]}={json.dumps(value)}" for name, value in vars(args).items()
                 if name.startswith("opt:") and value is not None]
    if args.device:
        overrides.append(f"trainer.device={json.dumps(args.device)}")
    if args.instance:
        overrides.append(f"trainer.instance={json.dumps(args.instance)}")
    overrides += args.overrides
    if not args.resume:
        return config_io.load(task, args.config, overrides)
    if args.run_dir is None:
        raise UserError("--resume needs --run-dir DIR (the run to continue)")
    saved = args.run_dir / "config.json"
    if not saved.is_file():
        raise UserError(f"nothing to resume: {saved} does not exist; run without --resume to start a new run")
    if args.config:
        print(f"note: --resume continues with {saved}; {args.config} is not read (use --set to change values)",
              file=sys.stderr)
    return config_io.validate_with_overrides(task, json.loads(saved.read_text()), str(saved), overrides)


def main(argv: Sequence[str] | None = None) -> int:
    process_env.apply_defaults()  # before torch loads OpenMP and oneDNN (core/process_env.py)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_general_help())
        return 0 if argv else EXIT_USER_ERROR
    try:
        task = registry.get_task(argv[0])
    except registry.UnknownTask as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    args = build_parser(task).parse_args(argv[1:])
    from core.trainer import TrainingStopped, fit

    try:
        cfg = resolve_config(task, args)
        run_dir = args.run_dir or Path("runs") / task.name / time.strftime("%Y%m%d-%H%M%S")
        summary = fit(task, cfg, run_dir, resume=args.resume)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except TrainingStopped as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        _close_process_group()
    if summary["stopped_by"] != "completed" or int(os.environ.get("RANK", 0)) != 0:
        return 0  # fit printed how to resume; one "done" line per run, from rank 0
    best = summary["best_metric"]
    print(f"done: {summary['steps']} steps in {summary['wall_s']:.1f}s; best {best['name']} = {best['value']} "
          f"at step {best['step']}; run directory {run_dir}")
    return 0


def _close_process_group() -> None:
    """Shut a multi-process run's process group down before the interpreter exits: gloo's
    threads still running at exit abort the process ("terminate called without an active
    exception", exit -6) now and then, failing a run that had finished."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())

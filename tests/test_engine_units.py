"""Properties of the engine's small parts: data order, LR schedules, precision, checkpoints."""
from __future__ import annotations

import torch
from hypothesis import given, settings, strategies as st

from core.checkpoint import CheckpointManager, load
from core.data_order import ResumableBatchSampler
from core.precision import Precision, resolve
from core.schedule import lr_multiplier


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 300), batch=st.integers(1, 17), world=st.integers(1, 4),
       seed=st.integers(0, 10**6), epoch=st.integers(0, 50), start=st.integers(0, 40))
def test_data_order_shards_partition_and_resume(n, batch, world, seed, epoch, start):
    per_epoch = ResumableBatchSampler.batches_per_epoch(n, batch, world)
    ranks = [list(ResumableBatchSampler(n, batch, seed, epoch, world, r)) for r in range(world)]
    single = list(ResumableBatchSampler(n, batch * world, seed, epoch))
    assert all(len(batches) == per_epoch for batches in ranks)
    seen = [i for batches in ranks for b in batches for i in b]
    assert len(seen) == len(set(seen)) == per_epoch * batch * world  # disjoint, tail dropped
    # W processes with batch B see, step by step, what 1 process with batch B*W sees
    for step in range(per_epoch):
        assert sorted(i for r in range(world) for i in ranks[r][step]) == sorted(single[step])
    # resuming after `start` global batches yields exactly the rest of the epoch
    start = min(start, per_epoch)
    resumed = ResumableBatchSampler(n, batch, seed, epoch, world, 0, start_sample=start * batch * world)
    assert list(resumed) == ranks[0][start:]


def test_epochs_are_shuffled_differently():
    a = list(ResumableBatchSampler(100, 10, seed=1, epoch=0))
    b = list(ResumableBatchSampler(100, 10, seed=1, epoch=1))
    assert a != b and sorted(sum(a, [])) == sorted(sum(b, [])) == list(range(100))


@given(total=st.integers(1, 500), warmup=st.integers(0, 50), min_ratio=st.floats(0, 1))
def test_cosine_schedule_warms_up_then_decays_to_floor(total, warmup, min_ratio):
    f = lr_multiplier("cosine", total, warmup, min_ratio)
    values = [f(i) for i in range(total + 1)]
    w = min(warmup, total)  # a warmup longer than the run is cut to the run
    ramp, after = values[:w], values[w:]
    assert all(0 < a < b <= 1 for a, b in zip(ramp, ramp[1:]))  # linear warmup rises
    assert all(min_ratio - 1e-9 <= v <= 1 + 1e-9 for v in after)
    assert all(a >= b - 1e-12 for a, b in zip(after, after[1:]))  # non-increasing after warmup
    if total > w:
        assert abs(values[total] - min_ratio) < 1e-9


def test_onecycle_rises_then_falls():
    f = lr_multiplier("onecycle", 100, 0, 0.0)
    values = [f(i) for i in range(101)]
    peak = values.index(max(values))
    assert 20 <= peak <= 35 and values[0] < 0.1 and values[-1] < 1e-9


def test_precision_auto_resolution_on_cpu():
    cpu = torch.device("cpu")
    assert resolve("auto", cpu) == "fp32" and resolve("fp16", cpu) == "bf16"
    p = Precision.create("bf16", cpu)
    assert p.scaler is None
    with p.autocast():
        y = torch.nn.Linear(4, 4)(torch.randn(2, 4))
    assert y.dtype == torch.bfloat16


def test_checkpoint_keeps_last_k_and_best(tmp_path):
    m = CheckpointManager(tmp_path, keep_last=2)
    for step in range(1, 6):
        m.save({"step": step}, step, is_best=step == 2)
    assert [p.name for p in m.step_files()] == ["step-00000004.pt", "step-00000005.pt"]
    assert load(m.last)["step"] == 5 and load(m.best)["step"] == 2  # best survives pruning


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    import pytest

    from core.errors import UserError

    path = tmp_path / "x.pt"
    torch.save({"w": torch.ones(1000)}, path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(UserError, match="cannot be read"):
        load(path)

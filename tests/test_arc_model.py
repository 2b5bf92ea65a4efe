"""The ARC guide model, metrics and task plumbing (CPU, seconds)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core.config import load
from tasks.arc_guide import metrics
from tasks.arc_guide.dsl import PRIMITIVES
from tasks.arc_guide.generate import write_dataset
from tasks.arc_guide.dsl import N_COLOURS
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.arc_guide.model import GAP, ChangeEncoder, GuideNet, dihedral_region_permutations, pack_canvas, size_class
from tasks.arc_guide.task import ArcGuideTask, collate_records

P = len(PRIMITIVES)


def test_map_of_a_perfect_ranking_is_one_and_of_a_reversed_one_is_low():
    rng = np.random.default_rng(0)
    labels = (rng.random((200, P)) < 0.1).astype(np.uint8)
    labels[0] = 1  # every class has a positive
    perfect = labels + rng.random(labels.shape) * 0.5
    assert metrics.mean_average_precision(perfect, labels) == pytest.approx(1.0)
    assert metrics.mean_average_precision(-perfect, labels) < 0.3
    assert metrics.recall_at_k(perfect, labels, labels.sum(1)) == 1.0
    assert metrics.micro_f1(np.clip(perfect, 0, 1) * 0 + labels, labels) == 1.0
    assert metrics.exact_set_accuracy(labels.astype(float), labels) == 1.0
    assert metrics.exact_set_accuracy(np.zeros(labels.shape), labels) < 0.1


def test_average_precision_by_hand_and_ties_are_pessimistic():
    # ranking: pos, neg, pos -> AP = (1/1 + 2/3) / 2
    assert metrics.average_precision(np.array([0.9, 0.8, 0.7]), np.array([1, 0, 1])) == pytest.approx((1 + 2 / 3) / 2)
    assert metrics.average_precision(np.array([0.5, 0.5]), np.array([1, 0])) == pytest.approx(0.5)
    assert np.isnan(metrics.average_precision(np.array([0.1]), np.array([0])))


def test_recall_at_k_uses_length_plus_two():
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5]])
    labels = np.array([[1, 0, 0, 1, 0]])
    assert metrics.recall_at_k(scores, labels, np.array([2])) == 1.0  # k = 4 reaches rank 3
    assert metrics.recall_at_k(scores, labels, np.array([1])) == 0.0  # k = 3 does not


def _item(rng, h, w, k=3):
    pairs = [(rng.integers(0, 10, (h, w)).astype(np.uint8), rng.integers(0, 10, (w, h)).astype(np.uint8)) for _ in range(k)]
    labels = np.zeros(P, np.uint8)
    labels[[1, 5]] = 1
    return pairs, labels, 2


def test_collate_pads_to_the_largest_grid_of_the_batch_not_30():
    rng = np.random.default_rng(0)
    batch = collate_records([_item(rng, 3, 5), _item(rng, 7, 2, k=2)])
    assert batch["grids"].shape == (2, 3, 2, 7, 7) and batch["grids"].dtype == torch.uint8
    assert batch["pair_mask"].tolist() == [[True, True, True], [True, True, False]]
    assert batch["shapes"][1, 0, 1].tolist() == [2, 7] and batch["shapes"][1, 2].sum() == 0
    assert batch["labels"].shape == (2, P) and batch["lengths"].tolist() == [2, 2]


def test_a_record_scores_the_same_alone_or_next_to_big_grids():
    """Packing grids on one canvas must not let neighbours leak into each other."""
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    model = GuideNet(P, channels=8, depth=2, hidden=32).eval()
    small, big, tiny = _item(rng, 4, 6), _item(rng, 30, 29), _item(rng, 1, 1)
    keys = ("grids", "shapes", "pair_mask", "relations")
    with torch.no_grad():
        alone = model(*[collate_records([small])[k] for k in keys])
        mixed = model(*[collate_records([tiny, small, big])[k] for k in keys])
    assert torch.allclose(alone[0], mixed[1], atol=1e-5)


@given(st.integers(1, 10**7))
def test_size_classes_are_few_and_at_most_an_eighth_larger(v):
    c = size_class(v)
    assert v <= c <= v + v // 8 and size_class(c) == c  # a class is its own class
    k = v.bit_length() - 1
    octave = {size_class(x) for x in range(2**k, 2**(k + 1), max(1, 2**k // 64))}
    assert len(octave - {2**(k + 1)}) <= 8  # the top of an octave rounds up to the next one's first class


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.integers(1, 30)), min_size=1, max_size=40))
def test_packed_canvas_pads_with_a_dummy_grid_apart_from_the_real_cells(sides):
    """The cell lists are padded to size classes by cells of grid N on one dump cell that no
    real cell uses, GAP rows below every real cell (so no conv reaches across)."""
    shapes = np.array([(h, w) if h else (0, 0) for h, w in sides])
    cv = pack_canvas(shapes, (30, 30), 3, torch.device("cpu"))
    grid, position = cv.grid.numpy(), cv.position.numpy()
    real = grid < len(shapes)
    m = int((shapes[:, 0] * shapes[:, 1]).sum())
    assert real.sum() == m and len(grid) == size_class(m + 1) and (grid[~real] == len(shapes)).all()
    dump = position[~real]
    assert (dump == dump[0]).all() and dump[0] not in set(position[real].tolist())
    assert dump[0] // cv.width >= position[real].max(initial=-10**6) // cv.width + GAP + 1
    assert cv.height > dump[0] // cv.width and cv.height % 2 == 0 and cv.width % 2 == 0
    assert len(cv.half) == size_class(int(real[cv.half.numpy()].sum()) + 1)


def test_change_encoder_matches_a_plain_per_pair_reference():
    """The packed, channels-last change encoder equals running each same-shape pair on its
    own: a zero-padded conv over its one-hot grids, counted colour transitions."""
    torch.manual_seed(0)
    rng = np.random.default_rng(2)
    enc = ChangeEncoder(6).eval()
    batch = collate_records([_item(rng, 4, 4), _item(rng, 9, 9, k=2), _item(rng, 3, 7), _item(rng, 1, 1)])
    n, k = batch["grids"].shape[:2]
    grids = batch["grids"].reshape(n * k, 2, *batch["grids"].shape[-2:])
    shapes = batch["shapes"].reshape(n * k, 2, 2)
    same = (shapes[:, 0] == shapes[:, 1]).all(-1) & (shapes[:, 0, 0] > 0)
    assert 0 < int(same.sum()) < n * k  # both kinds present (the 3x7 pairs flip their shape)
    with torch.no_grad():
        transitions, code = enc(grids, shapes[:, 0], same)
        for i in range(n * k):
            if not same[i]:
                assert transitions[i].abs().sum() == 0 and code[i].abs().sum() == 0
                continue
            h, w = shapes[i, 0].tolist()
            before, after = grids[i, 0, :h, :w].long(), grids[i, 1, :h, :w].long()
            moves = np.zeros((N_COLOURS, N_COLOURS))
            np.add.at(moves, (before.numpy(), after.numpy()), 1.0)
            assert torch.allclose(transitions[i, :-1], torch.from_numpy(moves.ravel() / (h * w)).float())
            assert transitions[i, -1] == 1.0
            x = torch.cat([torch.nn.functional.one_hot(g, N_COLOURS).permute(2, 0, 1) for g in (before, after)]).float()
            y = torch.nn.functional.gelu(enc.mix(torch.nn.functional.gelu(enc.conv(x[None]))))[0].flatten(1)  # (C, h*w)
            assert torch.allclose(code[i], torch.cat([y.mean(1), y.amax(1)]), atol=1e-5)


def test_dihedral_region_permutations_are_permutations():
    perms = dihedral_region_permutations(3)
    assert perms.shape == (8, 9)
    assert all(sorted(p.tolist()) == list(range(9)) for p in perms)
    assert len({tuple(p.tolist()) for p in perms}) == 8


@pytest.fixture(scope="module")
def tiny_cfg(tmp_path_factory):
    path = write_dataset(tmp_path_factory.mktemp("arc") / "tiny.json", 96, seed=5, max_length=2)
    return load("arc-guide", None, [f"data.path={path}", "model.channels=8", "model.hidden=32", "model.depth=2",
                                    "data.val_fraction=0.25"])


def test_task_trains_and_evaluates_on_a_tiny_dataset(tiny_cfg):
    task = ArcGuideTask()
    torch.manual_seed(0)
    train, val = task.build_datasets(tiny_cfg)
    assert len(train) + len(val) == 96 and len(val) > 0
    model = task.build_model(tiny_cfg)
    collate = task.collate_fn(tiny_cfg)
    batch = collate([train[i] for i in range(16)])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(25):  # overfit one batch: the loss must fall
        loss, logs = task.loss(tiny_cfg, model, batch)
        assert loss.dtype == torch.float32 and torch.isfinite(loss) and loss.ndim == 0 and logs == {}
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.7 * first
    model.eval()
    with torch.no_grad():
        result = task.evaluate(tiny_cfg, model, torch.utils.data.DataLoader(val, batch_size=8, collate_fn=collate))
    assert set(result) == {"map", "loss", "micro_f1", "exact_set_acc", "recall_at_k"}
    assert all(np.isfinite(v) for v in result.values()) and 0 <= result["map"] <= 1
    assert task.monitor == ("map", "max") and task.batch_len(batch) == 16
    # items are pure functions of the index
    a, b = train[3], train[3]
    assert all(np.array_equal(x, y) for p, q in zip(a[0], b[0]) for x, y in zip(p, q)) and np.array_equal(a[1], b[1])


def test_example_batch_is_the_heaviest_batch_of_the_loaded_data(tiny_cfg):
    task = ArcGuideTask()
    train, _ = task.build_datasets(tiny_cfg)
    extent = task.batch_extent(tiny_cfg, train)
    # brute force over every training record's (first max_pairs) grids
    records = [train[i][0] for i in range(len(train))]
    assert (extent["height"], extent["width"], extent["pairs"]) == (
        max(g.shape[0] for pairs in records for pair in pairs for g in pair),
        max(g.shape[1] for pairs in records for pair in pairs for g in pair),
        max(len(pairs) for pairs in records))
    cells = [sum(g.size for pair in pairs for g in pair) for pairs in records]
    # the batches the run draws, as the trainer's sampler yields them
    from core.data_order import ResumableBatchSampler

    t = tiny_cfg.trainer
    drawn = [b for e in range(t.max_epochs) for b in ResumableBatchSampler(len(train), 4, t.seed, e)]
    weights = sorted((sum(cells[i] for i in b) for b in drawn), reverse=True)
    for rank in (0, 1, 2):  # the rank-th heaviest batch the run draws
        batch = task.example_batch(tiny_cfg, 4, extent, rank=rank)
        real_cells = int((batch["shapes"][..., 0].long() * batch["shapes"][..., 1].long()).sum())
        assert real_cells == weights[rank]
        assert batch["labels"].shape == (4, P)
    # no extent: an upper bound of max_pairs pairs of 30x30 grids
    assert task.example_batch(tiny_cfg, 2, {})["grids"].shape == (2, tiny_cfg.data.max_pairs, 2, 30, 30)


def test_pos_weight_reaches_the_loss(tiny_cfg):
    task = ArcGuideTask()
    heavy = load("arc-guide", None, [f"data.path={tiny_cfg.data.path}", "loss.pos_weight=5.0", "model.channels=8",
                                     "model.hidden=32", "model.depth=2"])
    torch.manual_seed(0)
    plain_model = task.build_model(tiny_cfg)
    torch.manual_seed(0)
    heavy_model = task.build_model(heavy)
    batch = task.example_batch(tiny_cfg, 4, {})
    with torch.no_grad():
        assert float(task.loss(heavy, heavy_model, batch)[0]) > float(task.loss(tiny_cfg, plain_model, batch)[0])
    # the weight is config, not model state: the same weights give the heavier loss under the heavy config
    assert "pos_weight" not in plain_model.state_dict()
    with torch.no_grad():
        assert float(task.loss(heavy, plain_model, batch)[0]) > float(task.loss(tiny_cfg, plain_model, batch)[0])


def test_without_a_dataset_the_built_in_one_is_generated_once_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("TWOTRACK_CACHE", str(tmp_path))
    cfg = load("arc-guide", None, ["data.default_samples=100", "data.default_max_length=1"])
    task = ArcGuideTask()
    train, val = task.build_datasets(cfg)
    files = list((tmp_path / "arc_guide").glob("default-*.json"))
    assert len(files) == 1 and len(train) + len(val) == 100
    stamp = files[0].stat().st_mtime_ns
    again, _ = task.build_datasets(cfg)
    assert files[0].stat().st_mtime_ns == stamp and again.data.stats["cache"] == "hit"

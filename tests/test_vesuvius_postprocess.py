"""Post-processing (tasks/vesuvius/postprocess.py): each step on hand-built volumes, the
greedy tuning on planted defects, and its path through training, the checkpoint and predict."""
from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

from core.checkpoint import load as load_checkpoint
from tasks.vesuvius import postprocess as pp
from tasks.vesuvius import predict
from tasks.vesuvius.inference import sliding_window_probs
from tasks.vesuvius.synth import write_tiff

from test_vesuvius_task import trained  # noqa: F401  (the module-scoped 2-step run)


def test_small_components_go_and_connectivity_decides_what_is_small():
    m = np.zeros((12, 12, 12), bool)
    m[2, 1:11, 1:11] = True  # a sheet of 100 voxels
    m[6, 6, 6] = m[7, 7, 7] = True  # two voxels touching at a corner only
    assert pp.remove_small_components(m, 2, 6).sum() == 100  # 6-connected: two singletons, removed
    assert pp.remove_small_components(m, 2, 26).sum() == 102  # 26-connected: one pair, kept
    assert pp.remove_small_components(m, 101, 26).sum() == 0


def test_pinholes_are_plugged_and_sheet_edges_do_not_grow():
    m = np.zeros((9, 9, 9), bool)
    m[1:8, 4, 1:8] = True  # a sheet across y
    holed = m.copy()
    holed[4, 4, 4] = False
    plugged = pp.plug_pinholes(holed)
    assert plugged[4, 4, 4] and np.array_equal(plugged, m)  # only the hole changed
    assert np.array_equal(pp.plug_pinholes(m), m)


def test_apply_orders_threshold_removal_plugging_and_closing():
    prob = np.zeros((10, 10, 10))
    prob[5, 1:9, 1:9] = 0.8
    prob[5, 4, 4] = 0.45  # a pinhole below 0.5
    prob[1, 1, 1] = 0.9  # a speck
    raw = pp.apply(prob, pp.PostProcess())
    assert raw.dtype == np.uint8 and raw[1, 1, 1] == 1 and raw[5, 4, 4] == 0
    cleaned = pp.apply(prob, pp.PostProcess(min_component=5, plug_holes=True))
    assert cleaned[1, 1, 1] == 0 and cleaned[5, 4, 4] == 1 and cleaned.sum() == 64
    assert pp.apply(prob, pp.PostProcess(threshold=0.4))[5, 4, 4] == 1
    assert pp.apply(prob, pp.PostProcess(closing=1))[5, 4, 4] == 1  # closing fills it too


def test_tuning_finds_the_planted_defects_and_never_lowers_the_score():
    """Two sheets as ground truth; the 'prediction' adds specks and pinholes: tuning keeps
    component removal and plugging, and every kept step raises the objective."""
    rng = np.random.default_rng(0)
    labels, probs = [], []
    for _ in range(2):
        gt = np.zeros((32, 32, 32), np.uint8)
        gt[:, 8:11] = 1
        gt[:, 20:23] = 1
        prob = np.where(gt == 1, 0.9, 0.05)
        holes = rng.integers(2, 30, (12, 2))
        prob[holes[:, 0], 9, holes[:, 1]] = 0.1  # pinholes through the middle of a sheet
        specks = rng.integers(0, 32, (40, 3))
        specks = specks[gt[specks[:, 0], specks[:, 1], specks[:, 2]] == 0]
        prob[specks[:, 0], specks[:, 1], specks[:, 2]] = 0.95
        labels.append(gt)
        probs.append(prob)
    params, trace = pp.tune(probs, labels)
    objectives = [row["objective"] for row in trace]
    assert objectives == sorted(objectives) and objectives[-1] > objectives[0] + 0.01
    assert params.min_component >= 2
    assert trace[0]["step"].startswith("raw") and len(trace) == 5 and trace[-1]["step"] == "threshold"
    kept, short = pp.tune(probs, labels, threshold=0.45, tune_threshold=False)
    assert kept.threshold == 0.45 and [row["step"] for row in short][-1] == "closing" and len(short) == 4


def test_training_stores_tuned_postprocessing_and_predict_applies_it(trained, tmp_path, capsys):  # noqa: F811
    task, cfg, run, summary = trained
    best = run / "checkpoints" / "best.pt"
    meta = load_checkpoint(best)["meta"]
    params = pp.PostProcess.from_meta(meta["postprocess"])
    tuning = summary["after_training"]["postprocess"]
    assert tuning["params"] == meta["postprocess"]
    # one validation scroll (90003): "auto" leaves the threshold where training evaluated it
    assert tuning["scrolls"] == 1 and not tuning["threshold_tuned"] and params.threshold == cfg.eval.threshold
    volume = np.random.default_rng(3).integers(0, 255, (24, 24, 24), dtype=np.uint8)
    write_tiff(tmp_path / "v.tif", volume)
    predict.main(["--checkpoint", str(best), "--input", str(tmp_path / "v.tif"), "--output", str(tmp_path / "post.tif"),
                  "--device", "cpu"])
    predict.main(["--checkpoint", str(best), "--input", str(tmp_path / "v.tif"), "--output", str(tmp_path / "raw.tif"),
                  "--device", "cpu", "--no-postprocess"])
    assert "post-processing {" in capsys.readouterr().err
    model = task.build_model(cfg)
    model.load_state_dict(load_checkpoint(best)["model"])
    with torch.no_grad():
        prob = sliding_window_probs(model.eval(), volume, cfg.features.channels, cfg.data.patch_size,
                                    cfg.eval.overlap, False, cfg.eval.windows_per_batch)
    assert np.array_equal(tifffile.imread(tmp_path / "post.tif"), pp.apply(prob, params))
    assert np.array_equal(tifffile.imread(tmp_path / "raw.tif"), (prob > cfg.eval.threshold).astype(np.uint8))


def test_tune_command_writes_the_checkpoint_and_dry_run_does_not(trained, tmp_path, capsys):  # noqa: F811
    _, _, run, _ = trained
    copy = tmp_path / "copy.pt"
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    state["meta"].pop("postprocess", None)
    torch.save(state, copy)
    pp.main(["--checkpoint", str(copy), "--device", "cpu", "--dry-run"])
    assert "postprocess" not in load_checkpoint(copy)["meta"] and "not written (--dry-run)" in capsys.readouterr().err
    pp.main(["--checkpoint", str(copy), "--device", "cpu", "--volumes", "1"])
    assert set(load_checkpoint(copy)["meta"]["postprocess"]) == {"threshold", "min_component", "connectivity",
                                                                  "plug_holes", "closing"}
    with pytest.raises(SystemExit) as e:
        pp.main(["--checkpoint", str(tmp_path / "missing.pt")])
    assert e.value.code == 2 and "missing.pt does not exist" in capsys.readouterr().err


def test_bad_threshold_and_a_run_without_validation_volumes_exit_2(trained, tmp_path, capsys):  # noqa: F811
    _, _, run, _ = trained
    best = run / "checkpoints" / "best.pt"
    with pytest.raises(SystemExit) as e:
        predict.main(["--checkpoint", str(best), "--input", str(tmp_path / "v.tif"), "--output", str(tmp_path / "o.tif"),
                      "--threshold", "1.5"])
    assert e.value.code == 2 and "--threshold must be in (0, 1), got 1.5" in capsys.readouterr().err
    state = load_checkpoint(best)
    state["config"]["data"].update(val_scrolls=[], val_fraction=0.0)  # a run whose config holds out nothing
    torch.save(state, tmp_path / "no_val.pt")
    with pytest.raises(SystemExit) as e:
        pp.main(["--checkpoint", str(tmp_path / "no_val.pt"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "no validation volumes to tune post-processing on" in err and "no_val.pt" in err

"""On-device features (torch) against the scipy.ndimage reference, channel by channel."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import UserError
from tasks.vesuvius.features import (
    CHANNELS,
    FEATURES,
    Channel,
    compute_features,
    compute_features_reference,
    context_margin,
    largest_magnitude_eigenvalue,
)
from tasks.vesuvius.synth import ScrollParams, make_volume

# the largest sigma each channel uses: the contract holds at voxels >= 4 * sigma from the border
CHANNEL_SIGMA = {"intensity": 0, "log_sigma1": 1, "log_sigma2": 2, "gradient_magnitude_sigma1": 1,
                 "sheetness_sigma1.5": 1.5, "dog_sigma1.5_3": 3}


def _interior(a: np.ndarray, sigma: float) -> np.ndarray:
    m = int(np.ceil(4 * sigma))
    return a[m : a.shape[0] - m, m : a.shape[1] - m, m : a.shape[2] - m] if m else a


def _compare(vol: np.ndarray) -> dict[str, float]:
    ref = compute_features_reference(vol)
    got = compute_features(torch.from_numpy(vol)[None, None])[0].numpy()
    assert got.shape == ref.shape == (len(FEATURES),) + vol.shape
    return {name: float(np.abs(_interior(got[c] - ref[c], CHANNEL_SIGMA[name])).max(initial=0.0)) for c, name in enumerate(FEATURES)}


def test_feature_order_is_the_documented_one():
    assert FEATURES == ("intensity", "log_sigma1", "log_sigma2", "gradient_magnitude_sigma1",
                        "sheetness_sigma1.5", "dog_sigma1.5_3")
    assert context_margin() == 12  # sigma 3 * truncate 4


@pytest.mark.parametrize("channel", FEATURES)
def test_each_channel_matches_scipy_on_random_patch(channel):
    vol = np.random.default_rng(1).random((30, 32, 34), dtype=np.float32)
    assert _compare(vol)[channel] < 1e-3


def test_all_channels_match_scipy_on_synthetic_scroll_patch():
    image, _ = make_volume(40, ScrollParams.draw(np.random.default_rng(3)), seed=5)
    vol = image.astype(np.float32) / 255
    errors = _compare(vol)
    assert max(errors.values()) < 1e-3, errors
    # the sheets give the channels real signal (so the comparison is not trivially of zeros)
    ref = compute_features_reference(vol)
    assert all(np.abs(ref[c]).max() > 1e-2 for c in range(len(FEATURES)))


@settings(max_examples=12, deadline=None)
@given(d=st.integers(4, 28), h=st.integers(4, 28), w=st.integers(4, 28), seed=st.integers(0, 2**16))
def test_features_match_scipy_over_sizes(d, h, w, seed):
    # includes patches thinner than a kernel radius (scipy then reflects repeatedly)
    vol = np.random.default_rng(seed).random((d, h, w), dtype=np.float32)
    ref = compute_features_reference(vol)
    got = compute_features(torch.from_numpy(vol)[None, None])[0].numpy()
    # the torch version reproduces scipy's reflect padding, so it matches on every voxel
    np.testing.assert_allclose(got, ref, atol=1e-3)


def test_batch_and_channel_selection():
    x = torch.rand(3, 1, 16, 18, 20)
    full = compute_features(x)
    picked = compute_features(x, ["dog_sigma1.5_3", "intensity"])
    assert picked.shape == (3, 2, 16, 18, 20)
    torch.testing.assert_close(picked[:, 0], full[:, 5])
    torch.testing.assert_close(picked[:, 1], full[:, 0])
    for i in range(3):  # each sample is independent of the others
        torch.testing.assert_close(compute_features(x[i : i + 1])[0], full[i])
    with pytest.raises(UserError, match="unknown channel"):
        compute_features(x, ["log_sigma7"])


def test_features_stay_fp32_under_cpu_autocast():
    x = torch.rand(1, 1, 20, 20, 20)
    plain = compute_features(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = compute_features(x)
    assert auto.dtype == torch.float32
    torch.testing.assert_close(auto, plain)


def test_eigenvalue_closed_form_matches_numpy_on_degenerate_matrices():
    rng = np.random.default_rng(0)
    mats = rng.normal(size=(500, 3, 3))
    mats = mats + mats.transpose(0, 2, 1)
    mats[:50] = np.eye(3) * rng.normal(size=(50, 1, 1))  # triple eigenvalue
    mats[50:100] = np.diag([1.0, 1.0, -2.0])  # double eigenvalue
    eig = np.linalg.eigvalsh(mats)
    want = np.where(np.abs(eig[:, 0]) > np.abs(eig[:, 2]), eig[:, 0], eig[:, 2])
    t = torch.from_numpy(mats.astype(np.float32))
    got = largest_magnitude_eigenvalue(t[:, 0, 0], t[:, 1, 1], t[:, 2, 2], t[:, 0, 1], t[:, 0, 2], t[:, 1, 2])
    np.testing.assert_allclose(got.numpy(), want, atol=1e-4)


@pytest.mark.cuda
def test_features_on_cuda_match_scipy():
    vol = np.random.default_rng(2).random((40, 40, 40), dtype=np.float32)
    got = compute_features(torch.from_numpy(vol)[None, None].cuda())
    assert got.device.type == "cuda"
    np.testing.assert_allclose(got[0].cpu().numpy(), compute_features_reference(vol), atol=1e-3)


def test_a_new_channel_is_one_record(monkeypatch):
    """Registering one Channel record is all a new feature needs: the device version, the
    scipy reference, the normalisation and the context margin all follow from it."""
    from scipy import ndimage

    record = Channel("gaussian_sigma4", {4.0: [(0, 0, 0)]}, lambda g, vol: g[(4.0, (0, 0, 0))],
                     lambda vol, kw: ndimage.gaussian_filter(vol, 4.0, **kw), (0.5, 2.0))
    monkeypatch.setitem(CHANNELS, record.name, record)
    channels = ("log_sigma1", "gaussian_sigma4")
    assert context_margin(channels) == 16  # int(4 * 4 + 0.5)
    vol = np.random.default_rng(0).random((40, 40, 40), dtype=np.float32)
    got = compute_features(torch.from_numpy(vol)[None, None], channels)[0].numpy()
    ref = compute_features_reference(vol, channels)
    assert np.abs(_interior(got[1] - ref[1], 4.0)).max() < 1e-4
    assert np.abs(_interior(got[0] - ref[0], 1.0)).max() < 1e-3
    from tasks.vesuvius.features import normalize_features

    norm = normalize_features(torch.from_numpy(got)[None], channels)[0, 1].numpy()
    assert np.allclose(norm, (got[1] - 0.5) * 2.0)

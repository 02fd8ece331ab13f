"""uint8 RGB <-> [-1, 1] tensors: one pair of functions, batched or not, exact round trip."""
from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch

from talkinghead import pipeline, tensors
from talkinghead.tensors import to_tensor, to_uint8


@pytest.fixture
def pixels():
    return np.random.default_rng(0).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)


def test_shapes_batched_or_not(pixels):
    assert to_tensor(pixels).shape == (2, 3, 5, 7)
    assert to_tensor(pixels[0]).shape == (3, 5, 7)
    assert to_tensor(pixels[None]).shape == (1, 2, 3, 5, 7)  # (B, K, 3, H, W) episodes
    assert to_uint8(to_tensor(pixels)).shape == (2, 5, 7, 3)
    assert to_uint8(to_tensor(pixels[0])).shape == (5, 7, 3)


def test_values_and_round_trip(pixels):
    x = to_tensor(pixels)
    assert x.dtype == torch.float32 and float(x.min()) >= -1 and float(x.max()) <= 1
    assert torch.equal(x[:, 0], torch.from_numpy(pixels[..., 0]).float() / 127.5 - 1)
    edges = to_tensor(np.array([[[0, 255, 128]]], np.uint8)).flatten()
    assert edges[:2].tolist() == [-1.0, 1.0] and abs(float(edges[2]) - 0.5 / 127.5) < 1e-6
    back = to_uint8(x)
    assert back.dtype == np.uint8 and np.array_equal(back, pixels)
    assert np.array_equal(to_uint8(x[0]), pixels[0])


def test_to_uint8_clamps_and_rounds():
    x = torch.tensor([-3.0, -1.0, 0.0, 0.999, 5.0]).reshape(1, 1, 5).expand(3, 1, 5)
    assert to_uint8(x)[0, :, 0].tolist() == [0, 0, 128, 255, 255]
    assert to_uint8(x.to(torch.bfloat16)).dtype == np.uint8
    assert to_uint8(x).shape == (1, 5, 3)


def test_device_and_dtype(pixels):
    x = to_tensor(pixels, "cpu", torch.float64)
    assert x.dtype == torch.float64 and x.device.type == "cpu"
    assert torch.equal(x, torch.from_numpy(pixels).permute(0, 3, 1, 2).double() / 127.5 - 1)


def test_pipeline_names_are_these():
    assert pipeline.to_tensor is to_tensor and pipeline.to_uint8 is to_uint8


def test_doctests():
    assert doctest.testmod(tensors).failed == 0

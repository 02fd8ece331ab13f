"""Device names: one resolver for the pipeline and the trainer (torchrun's local rank rule included)."""
from __future__ import annotations

import pytest
import torch

from talkinghead import devices, pipeline, training
from talkinghead.errors import InputError


def test_one_resolver_everywhere():
    assert pipeline.resolve_device is devices.resolve_device
    assert training.resolve_device is devices.resolve_device


def test_cpu_and_auto_without_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert devices.resolve_device("cpu") == torch.device("cpu")
    assert devices.resolve_device(None) == devices.resolve_device("auto") == torch.device("cpu")
    assert devices.resolve_device("auto", local_rank=1) == torch.device("cpu")
    with pytest.raises(InputError, match='Device "cuda" .* no CUDA GPU'):
        devices.resolve_device("cuda", local_rank=0)


def test_local_rank_names_the_gpu_only_where_none_was_named(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert devices.resolve_device("auto") == torch.device("cuda")  # the pipeline's rule: no index
    assert devices.resolve_device("cuda") == torch.device("cuda")
    assert devices.resolve_device("auto", local_rank=1) == torch.device("cuda", 1)
    assert devices.resolve_device("cuda", local_rank=1) == torch.device("cuda", 1)
    assert devices.resolve_device("cuda:0", local_rank=1) == torch.device("cuda", 0)
    assert devices.resolve_device("cpu", local_rank=1) == torch.device("cpu")
    with pytest.raises(InputError, match='"cuda:2" does not exist.*"cuda:0" to "cuda:1"'):
        devices.resolve_device("cuda:2")


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "meta", 1.5])
def test_unknown_names(device):
    with pytest.raises(InputError, match=r'Unknown device .*"auto", "cpu", "cuda" or "cuda:N"'):
        devices.resolve_device(device, local_rank=0)

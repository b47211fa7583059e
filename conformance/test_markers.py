"""The argument markers carry their own conversions: every marker implements them, and a batch
marker's sample, sub-batch and size agree with each other and with the rounding to the dtype."""

from __future__ import annotations

import inspect

import numpy as np
import torch

from conformance import markers as M

BASES = (M.Marker, M.BatchMarker)
MARKERS = [c for c in vars(M).values()
           if inspect.isclass(c) and issubclass(c, M.Marker) and c not in BASES]


def test_every_marker_implements_its_conversions() -> None:
    assert {"Batched", "PerSample", "Times", "Arr", "Seq", "Sched", "Model"} <= {
        c.__name__ for c in MARKERS}
    for cls in MARKERS:
        needed = ["for_spec", "for_runtime", "describe"]
        if issubclass(cls, M.BatchMarker):
            needed += ["size", "take", "sample"]
        for method in needed:
            inherited = {getattr(base, method, None) for base in BASES}
            assert getattr(cls, method) not in inherited, f"{cls.__name__} lacks {method}"


def test_batch_markers_round_take_and_sample_consistently() -> None:
    x = np.array([[1.0 + 2.0**-10, 3.0], [2.0, -1.0], [0.5, 0.25]])  # 1 + 2^-10: not a bfloat16
    call = M.Call([M.Batched(x), M.PerSample([3, 1, 2]), 7], {"t": M.Times([0.1, 0.5, 0.9])})
    assert M.batch_size(call) == 3
    part = M.sub_batch(call, [2, 0])
    assert M.batch_size(part) == 2 and part.args[2] == 7
    assert np.array_equal(part.args[0].sample(1), x[0])
    assert part.args[1].sample(None) == [2, 3] and part.kwargs["t"].sample(0) == 0.9
    spec_x = M.Batched(x).for_spec(torch.bfloat16)
    assert np.array_equal(spec_x.sample(0), [1.0, 3.0])  # rounded to bfloat16, then float64
    runtime_x = M.Batched(x).for_runtime(torch.bfloat16, "cpu")
    assert runtime_x.dtype == torch.bfloat16 and runtime_x.shape == (3, 2)
    assert M.PerSample([3, 1]).for_runtime(torch.float32, "cpu").dtype == torch.long

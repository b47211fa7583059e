"""The generic conformance tests: every registry record, every dtype, every device.

test_matches_spec         runtime(batch) == spec per sample (or their mean, for the loss),
                          within the record's tolerance for the dtype;
test_batch_independence   for samplers: sample i of a batch == the same sample run alone;
test_same_errors          the inputs a record lists as invalid raise ValueError on both sides.
A failure's first line is `REPRO …`: the function, dtype, device, shapes, seed and the command
that reruns exactly that case.
"""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings

from conformance.harness import run_batch_independence, run_case
from conformance.registry import RECORDS, Record
from conformance.tolerances import device_available, devices

CHECKED = [r for r in RECORDS if not r.exempt]


def _cases(records: list[Record]) -> list[object]:
    return [
        pytest.param(r, dtype, device, id=f"{r.name}-{dtype}-{device}")
        for r in records
        for device in devices()
        for dtype in r.dtypes
    ]


def _examples(record: Record) -> int:
    n = settings.default.max_examples
    return n if record.max_examples is None else min(n, record.max_examples)


def _require(device: str) -> None:
    if not device_available(device):
        pytest.fail(f"device {device!r} was asked for (DIFFSPEC_DEVICES) but torch cannot use it")


@pytest.mark.parametrize(("record", "dtype", "device"), _cases(CHECKED))
def test_matches_spec(record: Record, dtype: str, device: str) -> None:
    _require(device)

    @settings(max_examples=_examples(record))
    @given(plan=record.plan)
    def check(plan: object) -> None:
        if record.skip is not None:
            assume(not record.skip(plan, dtype))
        run_case(record, plan, dtype, device)

    check()


@pytest.mark.parametrize(("record", "dtype", "device"), _cases([r for r in CHECKED if r.sampler]))
def test_batch_independence(record: Record, dtype: str, device: str) -> None:
    _require(device)

    @settings(max_examples=max(1, _examples(record) // 2))
    @given(plan=record.plan)
    def check(plan: object) -> None:
        run_batch_independence(record, plan, dtype, device)

    check()


ERROR_CASES = [
    pytest.param(r, label, spec_call, runtime_call, id=f"{r.name}-{label}")
    for r in CHECKED
    for label, spec_call, runtime_call in r.errors
]


@pytest.mark.parametrize(("record", "label", "spec_call", "runtime_call"), ERROR_CASES)
def test_same_errors(record: Record, label: str, spec_call: object, runtime_call: object) -> None:
    with pytest.raises(ValueError):
        spec_call()  # type: ignore[operator]
    with pytest.raises(ValueError):
        runtime_call()  # type: ignore[operator]

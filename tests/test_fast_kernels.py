"""`--fast-kernels` picks, per machine, what is measured to be faster, and never slows a run."""

from pathlib import Path

import torch

import runtime.plumbing.fast_kernels as fast_kernels
from runtime.model import EpsFiLMNet, EpsFiLMNetConfig
from runtime.plumbing.fast_kernels import (
    FP32,
    choose,
    cpu_candidates,
    cpu_flags,
    native_bf16,
    pick,
)


def test_pick_takes_the_fastest_only_with_a_margin_over_fp32():
    assert pick({"fp32": 1.0, "channels_last": 0.5, "bf16": 0.7}) == "channels_last"
    assert pick({"fp32": 1.0, "channels_last": 0.97}) == "fp32"  # inside the 5 % margin
    assert pick({"fp32": 1.0, "channels_last": 1.5, "bf16": 10.0}) == "fp32"


def test_bf16_is_a_candidate_only_with_native_bf16():
    assert cpu_candidates({"avx2", "fma"}) == ["fp32", "channels_last"]
    assert not native_bf16({"avx512f", "avx2"})
    with_bf16 = cpu_candidates({"avx512f", "avx512_bf16"})
    assert "bf16" in with_bf16 and "bf16 + channels_last" in with_bf16
    assert "bf16" in cpu_candidates({"amx_bf16"})


def test_cpu_flags_reads_the_flags_line(tmp_path: Path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu avx2 avx512_bf16\n")
    assert cpu_flags(info) == {"fpu", "avx2", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == set()


def test_without_the_flag_nothing_is_probed_and_fp32_is_used():
    model = EpsFiLMNet(EpsFiLMNetConfig(1, 8, 1))
    assert choose(False, torch.device("cpu"), model, (4, 1, 8, 8)) is FP32


def test_probe_chooses_no_emulated_bf16_and_leaves_model_and_global_rng_alone():
    model = EpsFiLMNet(EpsFiLMNetConfig(1, 8, 1))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.random.get_rng_state()
    choice = choose(True, torch.device("cpu"), model, (4, 1, 8, 8), flags={"avx2"})
    assert not choice.bf16
    assert set(choice.probe_ms) == {"fp32", "channels_last"}
    assert all(v > 0 for v in choice.probe_ms.values())
    assert "chose" in choice.reason and choice.as_log()["chosen"] == choice.name
    assert torch.equal(torch.random.get_rng_state(), rng)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
        assert v.is_contiguous()  # the run's own model is not converted by the probe


def test_train_prints_and_logs_its_choice(tmp_path, capsys):
    import json

    from test_train_support import TINY, run_command

    from runtime.train import main as train_main

    out = tmp_path / "run"
    code, stdout, _ = run_command(train_main, [*TINY, "--out", out, "--fast-kernels"], capsys)
    assert code == 0
    line = next(s for s in stdout.splitlines() if s.startswith("fast kernels: "))
    kernels = json.loads((out / "train_log.json").read_text())["notes"]["kernels"]
    assert line.startswith(f"fast kernels: {kernels['chosen']} (CPU probe")
    assert kernels["probe_ms"]["fp32"] > 0
    if not {"avx512_bf16", "amx_bf16"} & cpu_flags():
        assert not kernels["bf16"]


def test_probe_runs_at_least_iters_rounds_and_longer_while_time_allows(monkeypatch):
    """A short pass gets more rounds (up to max_rounds) until the probe's time is spent; a long
    one is never timed fewer than `iters` times after its warm-up round."""
    calls = {"n": 0}

    def counting_step(*args, **kwargs):
        def step() -> None:
            calls["n"] += 1
        return step

    monkeypatch.setattr(fast_kernels, "_probe_step", counting_step)
    model = torch.nn.Linear(1, 1)
    fast_kernels.probe_cpu(model, (2, 1, 1, 1), ["fp32"], iters=3, seconds=0.0)
    assert calls["n"] == 1 + 3
    calls["n"] = 0
    fast_kernels.probe_cpu(model, (2, 1, 1, 1), ["fp32", "channels_last"], iters=3,
                           seconds=60.0, max_rounds=6)
    assert calls["n"] == 2 * (1 + 6)

"""`python -m runtime.sample` is derived from the sampler table (`runtime.samplers.SAMPLERS`):
its --sampler choices and help, the flags each sampler accepts, the --steps bounds, the
dispatch (runtime.sample's output equals the sampler function called directly on the same
noise) and the printed model evaluations. On the tiny checkpoint of test_train_support."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_train_support import (
    assert_one_line_error,
    run_command,
    tiny_run,  # noqa: F401 - fixture
)

from runtime.data.transforms import from_diffusion_range
from runtime.plumbing.checkpoint import load_checkpoint, restore_for_inference
from runtime.plumbing.config import SampleConfig, build_parser
from runtime.sample import main as sample_main
from runtime.sample import sample
from runtime.samplers import SAMPLER_FLAGS, SAMPLERS, Start

# a value other than the default for each sampler flag
GIVEN = {"eta": ("--eta", "0.5"), "clip": ("--no-clip",), "spacing": ("--spacing", "trailing"),
         "sigma_max": ("--sigma-max", "3"), "order": ("--order", "3"),
         "variant": ("--variant", "bh1"), "corrector": ("--no-corrector",),
         "variance": ("--variance", "fixed_large"), "shift": ("--shift", "3")}
# the options the dispatch test passes, each other than its default
OPTIONS = {"eta": 0.5, "clip": False, "order": 3, "variant": "bh1", "corrector": False,
           "variance": "fixed_large"}


def test_every_sampler_flag_has_a_test_value():
    assert set(GIVEN) == set(SAMPLER_FLAGS)


def test_sampler_choices_and_help_come_from_the_table():
    parser = build_parser(SampleConfig, "sample", "")
    action = next(a for a in parser._actions if a.dest == "sampler")
    assert tuple(action.choices) == tuple(SAMPLERS)
    for name, entry in SAMPLERS.items():
        assert f"{name}: {entry.help}" in action.help
    for flag in SAMPLER_FLAGS:
        help_text = next(a for a in parser._actions if a.dest == flag).help
        readers = [name for name, entry in SAMPLERS.items() if flag in entry.flags]
        assert f"(for --sampler {', '.join(readers)})" in help_text, (flag, help_text)


@pytest.mark.parametrize(("sampler", "flag"),
                         [(s, f) for s in SAMPLERS for f in SAMPLER_FLAGS
                          if f not in SAMPLERS[s].flags])
def test_a_flag_the_sampler_does_not_read_is_one_error_line(sampler, flag, tmp_path, capsys):
    argv = ["--checkpoint", tmp_path / "never-read.pt", "--sampler", sampler, *GIVEN[flag],
            "--out", tmp_path / "s.npy"]
    code, _, err = run_command(sample_main, argv, capsys)
    assert_one_line_error(code, err, GIVEN[flag][0], f"--sampler {sampler}", "applies to")


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_steps_beyond_the_bound_are_refused(sampler, tiny_run, tmp_path, capsys):  # noqa: F811
    argv = ["--checkpoint", tiny_run / "checkpoint.pt", "--sampler", sampler, "--steps", 11,
            "--out", tmp_path / "s.npy"]  # T = 10
    code, _, err = run_command(sample_main, argv, capsys)
    assert_one_line_error(code, err, "--steps", f"--sampler {sampler}", "11")
    assert not (tmp_path / "s.npy").exists()


def _direct(entry, ckpt, steps, seed, n, options):
    """The sampler function called by hand on the noise runtime.sample draws."""
    payload = load_checkpoint(ckpt)
    model, sched, derived, _ = restore_for_inference(payload, ckpt, torch.device("cpu"), True)
    start = Start.of(sched, payload["config"], None)
    gen = torch.Generator().manual_seed(seed)
    x_T = torch.randn((n, *(int(v) for v in derived["image_shape"])), generator=gen)
    with torch.no_grad():
        x0 = entry.sample(start.schedule(entry.kind), start.model(entry.kind, model),
                          start.state(entry.kind, x_T),
                          entry.grid(start, steps, "even"), gen if entry.stochastic else None,
                          **options)
    return from_diffusion_range(x0).clamp(0.0, 1.0).float().numpy()


def _start(ckpt: str) -> Start:
    payload = load_checkpoint(ckpt)
    sched = restore_for_inference(payload, ckpt, torch.device("cpu"), True)[1]
    return Start.of(sched, payload["config"], None)


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_sample_is_the_sampler_function_on_the_same_noise(sampler, tiny_run, tmp_path):  # noqa: F811
    entry = SAMPLERS[sampler]
    ckpt = str(tiny_run / "checkpoint.pt")
    bound = entry.steps(_start(ckpt))
    steps = bound.low if bound.low == bound.high else 3
    options = {k: v for k, v in OPTIONS.items() if k in entry.options}
    cfg = SampleConfig(checkpoint=ckpt, sampler=sampler, steps=steps, n=2, seed=3, device="cpu",
                       out=str(tmp_path / "s.npy"), **options)
    _, ran, nfe = sample(cfg)
    assert ran == steps and nfe == entry.evaluations(steps, 10)
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"),
                                  _direct(entry, ckpt, steps, 3, 2, options))


def test_default_steps_are_50_or_the_bound_below_it(tiny_run, tmp_path):  # noqa: F811
    ckpt = str(tiny_run / "checkpoint.pt")
    start = _start(ckpt)
    for sampler, entry in SAMPLERS.items():
        cfg = SampleConfig(checkpoint=ckpt, sampler=sampler, n=1, device="cpu",
                           out=str(tmp_path / "s.npy"))
        bound = entry.steps(start)
        assert sample(cfg)[1] == max(bound.low, min(50, bound.high)), sampler


def test_gallery_runs_come_from_the_table():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "sampler_gallery.py"
    loader = importlib.util.spec_from_file_location("sampler_gallery", path)
    gallery = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(gallery)
    free = [n for n, e in SAMPLERS.items() if e.evaluations(1, 1000) != e.evaluations(2, 1000)]
    assert [name for name, _ in gallery.RUNS] == free
    for name, steps in gallery.RUNS:
        cost = SAMPLERS[name].evaluations
        for s, target in zip(steps, gallery.TARGETS, strict=True):
            assert cost(s, 1000) <= target < cost(s + 1, 1000), (name, s, target)

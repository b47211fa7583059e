"""The commands compute the spec's result: `runtime.sample` for every sampler and every flag,
and every figure `runtime.evaluate` prints, against the NumPy spec in float64 on the same
weights and the same noise.

The tests run the commands' `main` as a user would (the .npy and the JSON they write) and
rebuild each result from the spec alone, following the contract the commands document:

- sample: all noise from one `torch.Generator` seeded with --seed: x_T (N, C, H, W) first, then
  each stochastic step's z in the order the steps run (ddim with η > 0, ddpm at t = T, …, 1);
  the grids, the σ cap and the starting times as runtime/sample.py's docstring gives them;
  images = clip(from_diffusion_range(x_0), 0, 1);
- evaluate: one generator seeded with --seed: per batch of --batch-size images t ~ U{1..T} (B,)
  then ε (B, C, H, W) for the loss; then per batch of the bound its noise (T, B, C, H, W).

A flag that changes the result must change it here too: each case also checks that the spec
result with the flag at its default differs from the result with the flag, by more than the
tolerance, so a command that ignored the flag would fail.

Tolerance: the runtime runs in float32, the spec in float64 on the same float32 inputs (the
checkpoint's weights, the generator's normals), so the conformance suite's float32 entry holds
(rtol = atol = 2e-5; a whole sample, up to 10 network evaluations deep, differed by less
than 1e-6 on these checkpoints), while every flag and sampler here moves the images by more
than 5e-3 (checked: 10·atol).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from test_train_support import (
    run_command,
    tiny_cond_run,  # noqa: F401 - fixture
    tiny_flow_run,  # noqa: F401 - fixture
    tiny_linear_run,  # noqa: F401 - fixture
)

import spec.data
import spec.ddim
import spec.ddpm
import spec.dpm_solver
import spec.edm
import spec.flow
import spec.forward
import spec.guidance
import spec.likelihood
import spec.pf_ode
import spec.prediction
import spec.schedule
import spec.unipc
from conformance.models import SPEC_MODELS, spec_forward
from conformance.tolerances import TOLERANCES
from runtime.data.datasets import load_dataset
from runtime.plumbing.checkpoint import load_checkpoint

TOL = TOLERANCES["float32"]  # |runtime − spec| ≤ atol + rtol·|spec|, elementwise
DEFAULT_STEPS, EDM_SIGMA_MAX = 50, 80.0  # runtime/sample.py's documented defaults


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A tiny cosine-schedule FiLM run with EMA (one residual block: the spec's float64 forward
    is the cost of these tests)."""
    from runtime.plumbing.config import TrainConfig
    from runtime.train import train

    out = tmp_path_factory.mktemp("small") / "run"
    train(TrainConfig(steps=3, T=10, hidden_c=8, blocks=1, n_samples=2, sample_steps=2,
                      progress=False, out=str(out), quality_samples=0))
    return out


# --------------------------------------------------------------------------- the spec side


def spec_model(payload: dict, ema: bool = True, labels=None, scale: float = 1.0):
    """The checkpoint's network as a spec Denoiser (float64 copies of the stored weights)."""
    description = payload["config"]["derived"]["model"]
    weights = payload["ema"] if ema and payload.get("ema") is not None else payload["model"]
    params = {k: v.double().numpy() for k, v in weights.items()}
    kind = description["kind"]
    net = spec_forward(kind, SPEC_MODELS[kind][0](**description["config"]), params)
    if kind == "cond_film":
        return spec.guidance.GuidedModel(net, labels, scale, description["prediction"])
    return spec.prediction.PredictionModel(net, description["prediction"])


def spec_schedule(payload: dict) -> spec.schedule.VPSchedule:
    return spec.schedule.VPSchedule(np.asarray(payload["config"]["derived"]["betas"],
                                               dtype=np.float64))


def continuous_schedule(payload: dict):
    """The checkpoint's schedule in continuous time, as runtime/sample.py documents it."""
    stored = payload["config"]
    T = len(stored["derived"]["betas"])
    if stored["schedule"] == "linear":
        return spec.pf_ode.VPLinearSchedule(beta_min=T * stored["beta_start"],
                                            beta_max=T * stored["beta_end"])
    return spec.pf_ode.VPCosineSchedule()


@dataclass(frozen=True)
class VPVelocity:
    """A VP checkpoint's network as the flow samplers' velocity model: at the flow noise level
    σ of a table time t, v̂ = ε̂ − x̂_0 of the VP model at t (spec.flow.velocity_from_vp)."""

    sched: spec.schedule.VPSchedule
    model: object
    time_of: dict

    def velocity(self, x: np.ndarray, sigma: float) -> np.ndarray:
        return spec.flow.velocity_from_vp(self.sched, self.model, x, self.time_of[float(sigma)])


@dataclass(frozen=True)
class NetVelocity:
    """A flow checkpoint's network as spec.flow's velocity model: v̂(x, σ) is its forward with
    σ as its time input (runtime/sample.py's docstring)."""

    net: object

    def velocity(self, x: np.ndarray, sigma: float) -> np.ndarray:
        return self.net.eps(x, sigma)


def spec_samples(payload: dict, sampler: str = "ddim", n: int = 3, seed: int = 0,
                 steps: int | None = None, eta: float = 0.0, spacing: str = "even",
                 clip: bool = True, sigma_max: float | None = None, class_: int | None = None,
                 guidance_scale: float = 1.0, ema: bool = True, order: int = 2,
                 variant: str = "bh2", corrector: bool = True,
                 variance: str = "fixed_small", shift: float = 1.0) -> np.ndarray:
    """What `runtime.sample` with these flags must write to an .npy: (N, C, H, W) in [0, 1]."""
    if payload["config"].get("objective") == "flow":  # a velocity network, from σ = 1
        shape = tuple(payload["config"]["derived"]["image_shape"])
        x_T = torch.randn((n, *shape), generator=torch.Generator().manual_seed(seed))
        run = {"flow-euler": spec.flow.flow_euler_sample,
               "flow-heun": spec.flow.flow_heun_sample}[sampler]
        x0 = run(spec.flow.RectifiedFlow(), NetVelocity(spec_model(payload, ema).net),
                 x_T.double().numpy(), spec.flow.flow_sigmas(steps or DEFAULT_STEPS, shift))
        return np.clip(spec.data.from_diffusion_range(x0), 0.0, 1.0)
    sched = spec_schedule(payload)
    T = sched.T
    shape = tuple(payload["config"]["derived"]["image_shape"])
    labels = None
    num_classes = payload["config"]["derived"]["model"]["config"].get("num_classes", 0)
    if num_classes:
        if class_ is not None:
            labels = np.full(n, class_)
        else:  # one row per class, n // K images each
            ncol = max(1, n // num_classes)
            n, labels = ncol * num_classes, np.repeat(np.arange(num_classes), ncol)
    model = spec_model(payload, ema, labels, guidance_scale)
    gen = torch.Generator().manual_seed(seed)

    def normal() -> np.ndarray:
        return torch.randn((n, *shape), generator=gen).double().numpy()

    x_T = normal()
    sigmas = np.sqrt((1 - sched.alpha_bar) / sched.alpha_bar)  # σ_t, t = 0..T
    cap = EDM_SIGMA_MAX if sigma_max is None else sigma_max
    t0 = int(np.nonzero(sigmas <= cap)[0].max())  # the last time with σ_t <= cap
    from_t0 = sampler.startswith(("dpm-solver++", "unipc", "flow-"))
    if steps is None:
        steps = min(DEFAULT_STEPS, t0 if from_t0 else T)
    if sampler == "ddim":
        grid = spec.schedule.timestep_grid(T, steps, spacing)
        noise = np.stack([normal() for _ in grid[1:]]) if eta > 0 else None
        x0 = spec.ddim.ddim_sample_strided(sched, model, x_T, grid, noise, eta=eta, clip=clip)
    elif sampler == "ddpm":
        drawn = [normal() for _ in range(T)]  # drawn at t = T, …, 1; the spec reads noise[t − 1]
        x0 = spec.ddpm.ddpm_sample(sched, model, x_T, list(range(T, -1, -1)),
                                   np.stack(drawn[::-1]), variance=variance)
    elif sampler in ("dpm-solver++", "dpm-solver++(2s)", "dpm-solver++(3m)", "unipc"):
        grid = spec.schedule.timestep_grid(t0, steps, spacing)
        if sampler == "unipc":
            x0 = spec.unipc.unipc_sample(sched, model, x_T, grid, order=order, variant=variant,
                                         corrector=corrector)
        else:
            run = {"dpm-solver++": spec.dpm_solver.dpm_solver_pp_2m_sample,
                   "dpm-solver++(2s)": spec.dpm_solver.dpm_solver_pp_2s_sample,
                   "dpm-solver++(3m)": spec.dpm_solver.dpm_solver_pp_3m_sample}[sampler]
            x0 = run(sched, model, x_T, grid)
    elif sampler == "pf-ode":
        sch = continuous_schedule(payload)
        t_start = min(float(sch.time_of_edm_sigma(sigmas[t0])), 1.0)
        x0 = spec.pf_ode.pf_ode_sample_euler(sch, model, x_T,
                                             spec.pf_ode.pf_ode_uniform_grid(steps, t_start))
    elif sampler in ("flow-euler", "flow-heun"):
        flow_sigmas = [float(spec.flow.vp_to_flow(ab, np.zeros(1))[1]) for ab in sched.alpha_bar]
        grid = [flow_sigmas[t] for t in spec.schedule.timestep_grid(t0, steps, spacing)]
        velocity = VPVelocity(sched, model, {s: t for t, s in enumerate(flow_sigmas)})
        x_sigma, _ = spec.flow.vp_to_flow(1 / (1 + sigmas[t0] ** 2), x_T)
        run = {"flow-euler": spec.flow.flow_euler_sample,
               "flow-heun": spec.flow.flow_heun_sample}[sampler]
        x0 = run(spec.flow.RectifiedFlow(), velocity, x_sigma, grid)
    else:  # euler, heun, euler-ancestral: EDM's σ grid from σ_max = σ_{t0} down to σ_1, then 0
        sch = continuous_schedule(payload)
        x_tilde, _ = spec.edm.vp_to_edm(1 / (1 + sigmas[t0] ** 2), x_T)
        grid = spec.edm.edm_sigmas(steps, sigmas[1], sigmas[t0])
        if sampler == "euler-ancestral":
            noise = np.stack([normal() for _ in grid[1:]])  # one draw per step, in order
            x0 = spec.edm.edm_euler_ancestral_sample(sch, model, x_tilde, grid, noise)
        else:
            run = {"euler": spec.edm.edm_sample_euler, "heun": spec.edm.edm_sample_heun}[sampler]
            x0 = run(sch, model, x_tilde, grid)
    return np.clip(spec.data.from_diffusion_range(x0), 0.0, 1.0)


# --------------------------------------------------------------------------- runtime.sample


def flags_of(options: dict) -> list[str]:
    """The command-line flags of `spec_samples`' keyword arguments."""
    argv: list[str] = []
    for name, value in options.items():
        flag = {"class_": "--class"}.get(name, "--" + name.replace("_", "-"))
        if isinstance(value, bool):  # --clip / --no-clip, --ema / --no-ema, ...
            argv.append(flag if value else "--no-" + flag[2:])
        else:
            argv += [flag, str(value)]
    return argv


def sample_npy(ckpt, options: dict, tmp_path, capsys) -> np.ndarray:
    from runtime.sample import main as sample_main

    out = tmp_path / "s.npy"
    argv = ["--checkpoint", ckpt, "--device", "cpu", *flags_of({"n": 3, **options}), "--out", out]
    code, _, err = run_command(sample_main, argv, capsys)
    assert code == 0, err
    return np.load(out)


RUNS = {"cosine film, EMA": "small_run", "linear residual, no EMA": "tiny_linear_run",
        "class-conditional": "tiny_cond_run", "flow film, EMA": "tiny_flow_run"}

# (run, the flags; the flag of the case last, checked to matter against its default)
CASES = [
    # every sampler, with its defaults where they are cheap (T = 10 on these checkpoints)
    ("cosine film, EMA", {"sampler": "ddim"}),
    ("cosine film, EMA", {"sampler": "ddpm", "n": 2}),
    ("cosine film, EMA", {"sampler": "pf-ode", "steps": 4}),
    ("cosine film, EMA", {"sampler": "euler", "steps": 4}),
    ("cosine film, EMA", {"sampler": "heun", "steps": 3}),
    ("cosine film, EMA", {"sampler": "dpm-solver++"}),
    ("cosine film, EMA", {"sampler": "dpm-solver++(2s)", "steps": 4}),
    ("cosine film, EMA", {"sampler": "dpm-solver++(3m)", "steps": 4}),
    ("cosine film, EMA", {"sampler": "unipc", "steps": 4}),
    ("cosine film, EMA", {"sampler": "euler-ancestral", "steps": 3}),
    ("cosine film, EMA", {"sampler": "flow-euler", "steps": 3}),
    ("cosine film, EMA", {"sampler": "flow-heun", "steps": 3}),
    ("linear residual, no EMA", {"sampler": "pf-ode", "steps": 4}),
    ("linear residual, no EMA", {"sampler": "euler", "steps": 3}),
    ("linear residual, no EMA", {"sampler": "heun", "steps": 3}),
    ("linear residual, no EMA", {"sampler": "ddpm", "n": 2}),
    # every flag
    ("cosine film, EMA", {"sampler": "ddim", "steps": 3}),
    ("cosine film, EMA", {"sampler": "ddim", "steps": 4, "eta": 0.8}),
    ("cosine film, EMA", {"sampler": "ddim", "steps": 4, "spacing": "trailing"}),
    ("cosine film, EMA", {"sampler": "ddim", "steps": 4, "spacing": "leading"}),
    ("cosine film, EMA", {"sampler": "ddim", "steps": 4, "spacing": "linspace"}),
    ("cosine film, EMA", {"sampler": "dpm-solver++", "steps": 4, "spacing": "leading"}),
    ("cosine film, EMA", {"sampler": "ddim", "steps": 3, "clip": False}),
    ("cosine film, EMA", {"sampler": "dpm-solver++", "steps": 3, "sigma_max": 3.0}),
    ("cosine film, EMA", {"sampler": "pf-ode", "steps": 3, "sigma_max": 3.0}),
    ("cosine film, EMA", {"sampler": "heun", "steps": 3, "sigma_max": 3.0}),
    ("linear residual, no EMA", {"sampler": "euler", "steps": 3, "sigma_max": 1.0}),
    ("cosine film, EMA", {"sampler": "flow-euler", "steps": 3, "spacing": "leading"}),
    ("cosine film, EMA", {"sampler": "flow-heun", "steps": 2, "sigma_max": 3.0}),
    ("cosine film, EMA", {"sampler": "euler-ancestral", "steps": 3, "seed": 5}),
    ("cosine film, EMA", {"sampler": "unipc", "steps": 6, "order": 3}),
    ("cosine film, EMA", {"sampler": "unipc", "steps": 4, "order": 1}),
    ("cosine film, EMA", {"sampler": "unipc", "steps": 4, "variant": "bh1"}),
    ("cosine film, EMA", {"sampler": "unipc", "steps": 4, "corrector": False}),
    ("cosine film, EMA", {"sampler": "ddpm", "n": 2, "variance": "fixed_large"}),
    ("cosine film, EMA", {"sampler": "ddim", "steps": 3, "ema": False}),
    ("cosine film, EMA", {"sampler": "ddim", "steps": 3, "n": 5}),
    ("cosine film, EMA", {"sampler": "ddim", "steps": 3, "seed": 7}),
    ("class-conditional", {"sampler": "ddim", "steps": 3, "n": 3, "class_": 4}),
    ("class-conditional", {"sampler": "ddim", "steps": 3, "n": 10, "guidance_scale": 3.0}),
    ("class-conditional", {"sampler": "heun", "steps": 3, "n": 3, "class_": 7,
                           "guidance_scale": 2.0}),
    # a flow checkpoint: the flow samplers from σ = 1 on spec.flow.flow_sigmas(S, --shift)
    ("flow film, EMA", {"sampler": "flow-euler", "steps": 3, "shift": 3.0}),
    ("flow film, EMA", {"sampler": "flow-heun", "steps": 2, "shift": 0.5}),
]
# What each flag is when not given (None: the flag is the sampler itself, or only sizes the
# output); a case whose last flag is here must give other images with the default.
DEFAULTS = {"steps": None, "eta": 0.0, "spacing": "even", "clip": True, "sigma_max": None,
            "ema": True, "seed": 0, "guidance_scale": 1.0, "class_": None, "order": 2,
            "variant": "bh2", "corrector": True, "variance": "fixed_small", "shift": 1.0}


def _case_id(case) -> str:
    run, options = case
    return f"{run}: " + " ".join(flags_of(options))


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_sample_writes_the_spec_samplers_images(case, tmp_path, capsys, request):
    run, options = case
    ckpt = request.getfixturevalue(RUNS[run]) / "checkpoint.pt"
    payload = load_checkpoint(ckpt)
    expected = spec_samples(payload, **options)
    got = sample_npy(ckpt, options, tmp_path, capsys)
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=TOL.rtol, atol=TOL.atol)
    # the case's last flag matters: without it (its default) the images differ
    flag = list(options)[-1]
    if flag in DEFAULTS and DEFAULTS[flag] != options[flag]:
        default = {**options, flag: DEFAULTS[flag]}
        if flag == "class_":  # without --class the rows hold every class: take the next one
            default[flag] = (options[flag] + 1) % 10
        elif DEFAULTS[flag] is None:
            del default[flag]
        other = spec_samples(payload, **default)
        assert other.shape == expected.shape
        assert np.abs(other - expected).max() > 10 * TOL.atol, f"{flag} changes nothing"


def test_every_sampler_and_flag_has_a_case():
    from runtime.plumbing.config import SampleConfig
    from runtime.samplers import SAMPLERS

    assert {options["sampler"] for _, options in CASES} == set(SAMPLERS)
    covered = {name for _, options in CASES for name in options} | {"checkpoint", "out",
                                                                     "device"}
    import dataclasses

    assert {f.name for f in dataclasses.fields(SampleConfig)} <= covered


# --------------------------------------------------------------------------- runtime.evaluate


def spec_evaluation(payload: dict, x01: np.ndarray, seed: int, batch_size: int, bins: int,
                    ema: bool = True) -> dict:
    """Every figure `runtime.evaluate` reports, from the spec, on the same t, ε and noise."""
    sched, model = spec_schedule(payload), spec_model(payload, ema)
    prediction = payload["config"]["derived"]["model"]["prediction"]
    T, n = sched.T, len(x01)
    # the data snapped to the bins grid, in [-1, 1], as the runtime saw them (float32)
    x01 = (np.round(x01.astype(np.float64) * (bins - 1)) / (bins - 1)).astype(np.float32)
    x0_all = (2 * x01 - 1).astype(np.float64)
    gen = torch.Generator().manual_seed(seed)
    eps_losses, own_losses, ts = [], [], []
    for start in range(0, n, batch_size):
        x0 = x0_all[start:start + batch_size]
        t = torch.randint(1, T + 1, (len(x0),), generator=gen).numpy()
        eps = torch.randn(x0.shape, generator=gen).double().numpy()
        for i in range(len(x0)):
            ti = int(t[i])
            x_t = spec.forward.q_sample(sched, x0[i], ti, eps[i])
            out, _ = spec.prediction.model_output(model, x_t, ti / T)
            eps_hat = spec.prediction.predict_eps(sched, x_t, out, ti, prediction)
            target = spec.prediction.prediction_target(sched, x0[i], ti, eps[i], prediction)
            eps_losses.append(np.mean((eps_hat - eps[i]) ** 2))
            own_losses.append(np.mean((out - target) ** 2))
        ts += t.tolist()
    per_image = x0_all[0].size
    bound_batch = max(1, min(batch_size, (1 << 26) // (T * per_image)))
    terms = np.zeros(T + 1)
    for start in range(0, n, bound_batch):
        x0 = x0_all[start:start + bound_batch]
        noise = torch.randn((T, *x0.shape), generator=gen).double().numpy()
        terms += spec.likelihood.vlb_terms(sched, model, x0, noise, bins)  # summed over x0
    to_bpd = 1 / (n * per_image * math.log(2))
    return {"eps_loss": float(np.mean(eps_losses)), "prediction_loss": float(np.mean(own_losses)),
            "bits_per_dim": float(terms.sum() * to_bpd),
            "bits_per_dim_terms": {"L_0": terms[0] * to_bpd,
                                   "L_1..L_T-1": terms[1:T].sum() * to_bpd,
                                   "L_T": terms[T] * to_bpd},
            "t": ts}


@pytest.mark.parametrize("flags", [
    {"n": 5, "seed": 3},
    {"n": 5, "seed": 3, "batch-size": 2, "bins": 33, "no-ema": True},
], ids=["one batch", "three batches, 33 bins, raw weights"])
def test_evaluate_prints_the_spec_figures(flags, small_run, tmp_path, capsys):
    from runtime.evaluate import format_table
    from runtime.evaluate import main as evaluate_main

    report = tmp_path / "e.json"
    argv = ["--checkpoint", small_run / "checkpoint.pt", "--device", "cpu", "--json", report]
    for name, value in flags.items():
        argv += [f"--{name}"] if value is True else [f"--{name}", value]
    code, printed, err = run_command(evaluate_main, argv, capsys)
    assert code == 0, err
    got = json.loads(report.read_text())
    payload = load_checkpoint(small_run / "checkpoint.pt")
    x01 = np.asarray(load_dataset("digits", None, "test").x[:flags["n"]])
    want = spec_evaluation(payload, x01, flags["seed"], flags.get("batch-size", 256),
                           flags.get("bins", 17), ema="no-ema" not in flags)
    assert len(set(want["t"])) > 2  # the batch mixes times (one t for all would be wrong)
    assert got["weights"] == ("model" if "no-ema" in flags else "ema")
    assert (got["n"], got["bins"], got["T"]) == (flags["n"], flags.get("bins", 17), 10)
    for name in ("eps_loss", "prediction_loss", "bits_per_dim"):
        assert got[name] == pytest.approx(want[name], rel=1e-5, abs=1e-7), name
    for name, value in want["bits_per_dim_terms"].items():
        assert got["bits_per_dim_terms"][name] == pytest.approx(value, rel=1e-5, abs=1e-7), name
    # ... and the table prints exactly these numbers
    assert printed.strip() == format_table(got).strip()
    for figure in (f"{got['eps_loss']:.5f}", f"{got['prediction_loss']:.5f}",
                   f"{got['bits_per_dim']:.4f}"):
        assert figure in printed


def test_evaluate_quality_scores_the_spec_dpm_solver_samples(small_run, tmp_path, capsys,
                                                             monkeypatch):
    """--samples N: the images scored are DPM-Solver++(2M)'s (10 steps from t0, or t0 steps
    where t0 < 10; x_T from --seed), as the spec draws them. The score is runtime.plumbing.quality's Fréchet
    distance of those images (tested in closed form in tests/test_quality.py; it has no spec
    twin): the images it was handed are recorded on their way in."""
    import runtime.plumbing.quality as quality
    from runtime.evaluate import main as evaluate_main

    scored = []
    real = quality.sample_quality

    def recording(samples01, *args, **kwargs):
        scored.append(np.array(samples01))
        return real(samples01, *args, **kwargs)

    monkeypatch.setattr(quality, "sample_quality", recording)
    report = tmp_path / "e.json"
    argv = ["--checkpoint", small_run / "checkpoint.pt", "--device", "cpu", "--n", 2,
            "--samples", 8, "--seed", 4, "--json", report]
    code, printed, err = run_command(evaluate_main, argv, capsys)
    assert code == 0, err
    payload = load_checkpoint(small_run / "checkpoint.pt")
    assert len(scored) == 1
    ab = spec_schedule(payload).alpha_bar
    t0 = int(np.nonzero(np.sqrt((1 - ab) / ab) <= EDM_SIGMA_MAX)[0].max())  # σ_t <= 80
    np.testing.assert_allclose(scored[0], spec_samples(payload, "dpm-solver++", n=8, seed=4,
                                                       steps=min(10, t0)),
                               rtol=TOL.rtol, atol=TOL.atol)
    got = json.loads(report.read_text())["quality"]
    assert got["sampler"].startswith(f"dpm-solver++(2m), {min(10, t0)} steps")
    assert got["n"] == 8 and got["samples"] == 8
    assert quality.format_quality(got) in printed

"""`make bench`: speed figures, each measured side by side in the same run.

    python scripts/bench.py [--device cpu|cuda] [--out bench.json] [--quick]

Figures (ratios > 1 favour us; each goal is the issue's):

1. train step       the full `runtime.train` step (data shard, t and ε draws, q_sample, loss,
                    backward, guarded Adam + EMA) against a bare forward + backward + Adam of the
                    same model on the same batch                                  goal ≥ 0.9
2. DDIM sampling    `ddim_sample_strided` against bare model forwards, same steps  goal ≥ 0.95
3. vs diffusers     our DDIM loop against diffusers' DDIMScheduler driving the same model
                    (bench extra; skipped when diffusers is not installed)      goal ≥ 1.0
4. fast kernels     the train step with --fast-kernels against fp32 (CPU: what its start-up
                    probe picks; CUDA: TF32/bf16 + torch.compile)    goal ≥ 0.97 (never slower)
   GFLOP/s          model FLOPs (torch.utils.flop_counter) per second of the training step and
                    of DDIM sampling, and as a fraction of this run's own n×n matmul throughput
                    in the dtype the step uses              goal ≥ 0.5 for the training step (CPU)
5. spec vs runtime  one DDIM step of the NumPy spec against the runtime (information)
6. conformance      wall time of `pytest conformance` (information; goal < 120 s on 2 cores)

Timing: each timed loop runs after warm-up; a figure is the median of per-iteration times.
The samplers are timed round-robin (bare, ours, diffusers, bare, ...); the training pipeline is a
whole `runtime.train` run, so its bare baseline is measured before and after it and averaged.
Either way a drift of the machine's speed during the run cancels out. CUDA timings synchronize
around each timed call.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from runtime.ddim import ddim_sample_strided, ddim_timesteps  # noqa: E402
from runtime.model import EpsFiLMNetConfig, build_model  # noqa: E402
from runtime.plumbing.config import TrainConfig  # noqa: E402
from runtime.plumbing.fast_kernels import choose as choose_kernels  # noqa: E402
from runtime.plumbing.fast_kernels import cpu_flags  # noqa: E402
from runtime.schedule import Schedule, cosine_betas  # noqa: E402
from runtime.train import model_config, train  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(fns: dict, iters: int, device: torch.device, warmup: int = 1
                ) -> dict[str, float]:
    """Median seconds per call of each fn over `iters` rounds after `warmup` rounds, calling them
    round-robin, so a drift of the machine's speed hits every contender alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for round_ in range(warmup + iters):
        for name, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            if round_ >= warmup:
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def timed(fn, iters: int, device: torch.device, warmup: int = 3) -> float:
    """Median seconds per call of fn() over `iters` calls after `warmup` calls."""
    return interleaved({"fn": fn}, iters, device, warmup)["fn"]


# --------------------------------------------------------------------------- the machine's limit

VECTOR_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16",
                "amx_tile", "amx_bf16", "asimd", "sve")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def matmul_gflops(dtype: torch.dtype, device: torch.device, n: int = 1024, iters: int = 10
                  ) -> float:
    """Achieved GFLOP/s of an n×n matmul in `dtype` (2n³ FLOPs): this run's practical peak."""
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn((n, n), generator=g).to(device, dtype)
    b = torch.randn((n, n), generator=g).to(device, dtype)
    return 2 * n**3 / timed(lambda: a @ b, iters, device) / 1e9


def train_step_flops(cfg: TrainConfig, shape: tuple[int, int, int]) -> int:
    """Model FLOPs of one training step (forward + backward), by torch.utils.flop_counter."""
    from torch.utils.flop_counter import FlopCounterMode

    C, H, W = shape
    model = build_model(*model_config(cfg, C))
    x = torch.zeros((cfg.batch_size, C, H, W))
    with FlopCounterMode(display=False) as counter:
        model(x, torch.zeros(cfg.batch_size)).square().mean().backward()
    return counter.get_total_flops()


def forward_flops(model: torch.nn.Module, shape: tuple[int, int, int], n: int) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    p = next(model.parameters())
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros((n, *shape), device=p.device), torch.zeros(n, device=p.device))
    return counter.get_total_flops()


# --------------------------------------------------------------------------- 1 and 4: training


def pipeline_step_time(cfg: TrainConfig, steps: int, warmup: int, data) -> tuple[float, str]:
    """(median seconds per step of runtime.train itself, read off its on_step callback; the
    kernels it ran with, from its train_log.json)."""
    stamps: list[float] = []

    def on_step(step: int) -> None:
        sync(torch.device(cfg.device))
        stamps.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as tmp:
        run = replace(cfg, steps=warmup + steps + 1, out=str(Path(tmp) / "run"), progress=False,
                      quality_samples=0,
                      log_every=warmup + steps + 1, checkpoint_every=0, n_samples=4,
                      sample_steps=2)
        train(run, on_step=on_step, data=data)
        notes = json.loads((Path(tmp) / "run" / "train_log.json").read_text())["notes"]
    deltas = [b - a for a, b in zip(stamps[warmup:], stamps[warmup + 1:], strict=False)]
    return statistics.median(deltas), notes["kernels"]["chosen"]


def bare_step_time(cfg: TrainConfig, shape: tuple[int, int, int], steps: int,
                   device: torch.device) -> tuple[float, bool]:
    """A bare forward + backward + Adam of the same model on a fixed batch (no diffusion code),
    with the kernels `--fast-kernels` chooses on this machine when cfg.fast_kernels is set.
    Returns (median seconds per step, whether those kernels compute in bf16)."""
    C, H, W = shape
    model = build_model(*model_config(cfg, C)).to(device)
    kernels = choose_kernels(cfg.fast_kernels, device, model, (cfg.batch_size, C, H, W))
    if kernels.channels_last:
        model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if kernels.compile else model
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=True)  # as runtime.train
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn((cfg.batch_size, C, H, W), generator=g).to(device)
    if kernels.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    target = torch.randn((cfg.batch_size, C, H, W), generator=g).to(device)
    t_norm = torch.rand((cfg.batch_size,), generator=g).to(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=kernels.bf16)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast:
            loss = (step_model(x, t_norm).float() - target).square().mean()
        loss.backward()
        opt.step()

    return timed(step, steps, device), kernels.bf16


def train_figures(cfg: TrainConfig, shape, steps: int, warmup: int, device, data) -> dict:
    bare_a, bf16 = bare_step_time(cfg, shape, steps, device)
    pipe, kernels = pipeline_step_time(cfg, steps, warmup, data)
    bare_b, _ = bare_step_time(cfg, shape, steps, device)
    bare = (bare_a + bare_b) / 2
    return {"pipeline_step_s": pipe, "bare_step_s": bare, "ratio_bare_over_pipeline": bare / pipe,
            "dtype": "bfloat16" if bf16 else "float32", "kernels": kernels}


def fast_kernels_speedup(cfg: TrainConfig, fp32: dict, fast: dict, steps: int, warmup: int,
                         data) -> tuple[float, str]:
    """fp32 step time ÷ --fast-kernels step time, and how it was measured. When the probe of
    the --fast-kernels run chose fp32, the two runs are the same computation and the figure is
    1 by construction (timing them against each other measures only the machine's drift). When
    it chose other kernels, each pipeline runs once more, interleaved (fp32, fast, fp32, fast),
    and the means are compared."""
    if fast["kernels"] == "fp32":
        return 1.0, "the probe chose fp32: the same kernels as plain fp32"
    fp32_again, _ = pipeline_step_time(cfg, steps, warmup, data)
    fast_again, chosen = pipeline_step_time(replace(cfg, fast_kernels=True), steps, warmup, data)
    ratio = (fp32["pipeline_step_s"] + fp32_again) / (fast["pipeline_step_s"] + fast_again)
    return ratio, (f"interleaved fp32/{fast['kernels']}/fp32/{chosen} runs, mean step times")


# --------------------------------------------------------------------------- 2 and 3: sampling


def sampling_figures(model, sched: Schedule, shape, n: int, steps: int, iters: int,
                     device: torch.device) -> dict:
    T = sched.T
    timesteps = ddim_timesteps(T, steps)
    g = torch.Generator(device="cpu").manual_seed(0)
    x_T = torch.randn((n, *shape), generator=g).to(device)
    t_norms = [torch.full((n,), t / T, device=device) for t in timesteps[:-1]]

    @torch.no_grad()
    def bare() -> None:
        x = x_T
        for tn in t_norms:
            x = model(x, tn)

    @torch.no_grad()
    def ours() -> None:
        ddim_sample_strided(sched, model, x_T, timesteps, clip=True)

    contenders = {"bare": bare, "ours": ours}
    try:
        from diffusers import DDIMScheduler
    except ImportError:
        DDIMScheduler = None
    if DDIMScheduler is not None:
        scheduler = DDIMScheduler(num_train_timesteps=T,
                                  trained_betas=sched.beta.float64[1:].numpy(),
                                  clip_sample=True, set_alpha_to_one=True,
                                  timestep_spacing="leading")
        scheduler.set_timesteps(steps, device=device)

        @torch.no_grad()
        def theirs() -> None:
            x = x_T
            for t in scheduler.timesteps:
                eps = model(x, torch.full((n,), (int(t) + 1) / T, device=device))
                x = scheduler.step(eps, t, x).prev_sample

        contenders["diffusers"] = theirs
    median = interleaved(contenders, iters, device)
    figures = {"ddim_s": median["ours"], "bare_forwards_s": median["bare"],
               "ratio_bare_over_ddim": median["bare"] / median["ours"]}
    if "diffusers" in median:
        figures.update(diffusers_s=median["diffusers"],
                       ratio_diffusers_over_ours=median["diffusers"] / median["ours"])
    else:
        figures["diffusers"] = "not installed (pip install -e '.[bench]')"
    return figures


# --------------------------------------------------------------------------- 5: spec vs runtime


def spec_vs_runtime(hidden: int) -> dict:
    import numpy as np

    import spec
    from runtime.ddim import ddim_step
    from runtime.model import from_spec_params

    cfg = spec.EpsFiLMNetConfig(data_channels=1, hidden_channels=hidden)
    params = spec.init_film_params(cfg, seed=0)
    s_model = spec.eps_film_net(cfg, params)
    s_sched = spec.VPSchedule(spec.cosine_betas(1000))
    x = np.random.default_rng(0).standard_normal((1, 8, 8))
    spec_s = timed(lambda: spec.ddim_step(s_sched, s_model, 500, x), 5, torch.device("cpu"), 1)

    from runtime import model as rmodel

    r_model = from_spec_params(rmodel.EpsFiLMNetConfig(1, hidden), params).float().eval()
    r_sched = Schedule(cosine_betas(1000))
    xt = torch.from_numpy(x).float()[None]
    with torch.no_grad():
        run_s = timed(lambda: ddim_step(r_sched, r_model, 500, xt), 20, torch.device("cpu"))
    return {"spec_step_s": spec_s, "runtime_step_s": run_s, "ratio_spec_over_runtime":
            spec_s / run_s}


def conformance_wall_time() -> float:
    env = {**os.environ, "HYPOTHESIS_PROFILE": os.environ.get("HYPOTHESIS_PROFILE", "ci")}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pytest", "conformance", "-q", "-p",
                    "no:cacheprovider"], cwd=REPO, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--out", default="bench.json", help="where to write the figures (JSON)")
    parser.add_argument("--quick", action="store_true", help="fewer iterations (smoke test)")
    parser.add_argument("--skip-conformance", action="store_true",
                        help="do not time the conformance suite")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA device is visible", file=sys.stderr)
        return 2
    iters, warm = (5, 2) if args.quick else (30, 5)

    flags = cpu_flags()
    results: dict = {"machine": {
        "platform": platform.platform(), "processor": cpu_model(),
        "vector_extensions": [f for f in VECTOR_FLAGS if f in flags],
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}}
    results["matmul_gflops"] = {name: matmul_gflops(dt, device) for name, dt in
                                (("float32", torch.float32), ("bfloat16", torch.bfloat16))}
    m = results["machine"]
    print(f"machine: {m['processor']}, {m['cpu_count']} cores, "
          f"{' '.join(m['vector_extensions']) or 'no vector flags read'}; matmul "
          f"fp32 {results['matmul_gflops']['float32']:.1f} GFLOP/s, bf16 "
          f"{results['matmul_gflops']['bfloat16']:.1f} GFLOP/s", flush=True)

    # The default run's configuration (digits 1×8×8), and a CIFAR-shaped one (3×32×32).
    base = TrainConfig(device=args.device)
    configs = {"digits_default": (base, (1, 8, 8)),
               "cifar_shaped": (replace(base, batch_size=64 if device.type == "cpu" else 256),
                                (3, 32, 32))}
    for name, (cfg, shape) in configs.items():
        data = fake_data(shape, 512)
        cfg = replace(cfg, dataset="digits")
        fig = train_figures(cfg, shape, iters, warm, device, data)
        fast = train_figures(replace(cfg, fast_kernels=True), shape, iters, warm,
                                       device, data)
        flops = train_step_flops(cfg, shape)
        for f in (fig, fast):
            f["gflops"] = flops / f["pipeline_step_s"] / 1e9
            f["fraction_of_matmul"] = f["gflops"] / results["matmul_gflops"][f["dtype"]]
        speedup, how = fast_kernels_speedup(cfg, fig, fast, iters, warm, data)
        results[f"train_{name}"] = {
            "fp32": fig, "fast_kernels": fast, "step_gflop": flops / 1e9,
            "fast_kernels_speedup": speedup, "fast_kernels_measured": how}
        print(f"[{name}] train step: pipeline {fig['pipeline_step_s'] * 1e3:.2f} ms, bare "
              f"{fig['bare_step_s'] * 1e3:.2f} ms, ratio {fig['ratio_bare_over_pipeline']:.3f}; "
              f"fast kernels ({fast['kernels']}) x{speedup:.2f} ({how})", flush=True)

    sched = Schedule(cosine_betas(1000), device=device)
    for name, shape, n in (("digits", (1, 8, 8), 256), ("cifar_shaped", (3, 32, 32), 64)):
        model = build_model("film", EpsFiLMNetConfig(shape[0], 64, 4)).to(device).eval()
        fig = sampling_figures(model, sched, shape, n, 50, max(3, iters // 6), device)
        fig["gflops"] = 50 * forward_flops(model, shape, n) / fig["ddim_s"] / 1e9
        fig["fraction_of_matmul"] = fig["gflops"] / results["matmul_gflops"]["float32"]
        results[f"sampling_{name}"] = fig
        print(f"[{name}] DDIM 50 steps x {n}: ours {fig['ddim_s'] * 1e3:.1f} ms, bare "
              f"{fig['bare_forwards_s'] * 1e3:.1f} ms, ratio {fig['ratio_bare_over_ddim']:.3f}"
              + (f"; diffusers {fig['diffusers_s'] * 1e3:.1f} ms, ratio "
                 f"{fig['ratio_diffusers_over_ours']:.3f}" if "diffusers_s" in fig else
                 f"; diffusers {fig['diffusers']}"), flush=True)

    results["spec_vs_runtime"] = spec_vs_runtime(64)
    if not args.skip_conformance:
        results["conformance_wall_s"] = conformance_wall_time()

    print_table(results)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")
    return 0


def fake_data(shape, n: int):
    """Random images in [0, 1] of the given shape: speed does not depend on the pixels."""
    import numpy as np

    from runtime.data.datasets import Dataset

    rng = np.random.default_rng(0)
    x = rng.random((n, *shape), dtype=np.float32)
    y = np.zeros(n, dtype=np.int64)
    ds = Dataset(name="bench", split="train", x=x, y=y, num_classes=1)
    return ds, replace(ds, split="test")


# "fast": --fast-kernels never slower than fp32; 0.97 leaves this machine's timing noise (a
# choice of fp32 measures 1.00 ± 0.03 against itself). "peak": the training step at half the
# same-run matmul throughput of the dtype it uses.
GOALS = {"train": 0.9, "ddim": 0.95, "diffusers": 1.0, "fast": 0.97, "peak": 0.5}


def print_table(r: dict) -> None:
    rows = []

    def row(what, value, goal=None, unit="x"):
        ok = "" if goal is None else ("met" if value >= goal else "MISSED")
        rows.append((what, f"{value:.3f}{unit}", "" if goal is None else f">= {goal}", ok))

    for name in ("digits_default", "cifar_shaped"):
        t = r[f"train_{name}"]
        row(f"train step bare/pipeline ({name}, fp32)", t["fp32"]["ratio_bare_over_pipeline"],
            GOALS["train"])
        row(f"train step bare/pipeline ({name}, fast)",
            t["fast_kernels"]["ratio_bare_over_pipeline"], GOALS["train"])
        row(f"fast kernels speedup ({name}, {t['fast_kernels']['kernels']})",
            t["fast_kernels_speedup"], GOALS["fast"] if r["machine"]["gpu"] is None else None)
        for kind in ("fp32", "fast_kernels"):
            f = t[kind]
            row(f"train step GFLOP/s ({name}, {kind}; {t['step_gflop']:.2f} GFLOP/step)",
                f["gflops"], None, "")
            row(f"  ... fraction of {f['dtype']} matmul", f["fraction_of_matmul"],
                GOALS["peak"] if r["machine"]["gpu"] is None else None, "")
    for name in ("digits", "cifar_shaped"):
        s = r[f"sampling_{name}"]
        row(f"DDIM bare/ours ({name})", s["ratio_bare_over_ddim"], GOALS["ddim"])
        row(f"DDIM GFLOP/s ({name})", s["gflops"], None, "")
        row("  ... fraction of float32 matmul", s["fraction_of_matmul"], None, "")
        if "ratio_diffusers_over_ours" in s:
            row(f"diffusers/ours DDIM loop ({name})", s["ratio_diffusers_over_ours"],
                GOALS["diffusers"])
    row("spec/runtime one DDIM step (info)", r["spec_vs_runtime"]["ratio_spec_over_runtime"])
    if "conformance_wall_s" in r:
        row("make conformance wall time", r["conformance_wall_s"], None, " s")
    width = max(len(w) for w, *_ in rows)
    print(f"\n{'figure':<{width}}  {'value':>10}  {'goal':>7}  status")
    for what, value, goal, ok in rows:
        print(f"{what:<{width}}  {value:>10}  {goal:>7}  {ok}")
    m = r["machine"]
    print(f"machine: {m['processor']}, {m['cpu_count']} cores "
          f"({' '.join(m['vector_extensions'])}), torch {m['torch']} "
          f"({m['torch_threads']} threads){', ' + m['gpu'] if m['gpu'] else ''}; matmul "
          f"fp32 {r['matmul_gflops']['float32']:.1f}, bf16 {r['matmul_gflops']['bfloat16']:.1f}"
          " GFLOP/s")


if __name__ == "__main__":
    sys.exit(main())

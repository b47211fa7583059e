"""`make mutants`: show that the conformance suite catches realistic single-line bugs.

Each mutant is a literal (file, old line, new line) replacement in `runtime/`. The script copies
`runtime/` into a temporary directory (spec/, conformance/, conftest.py and pyproject.toml are
symlinked beside it), checks that every mutant's old line occurs exactly once (it stops, naming
the mutant, if the source has changed), runs the suite once unmutated (it must pass), then
applies one mutant at a time and runs `pytest conformance -x`. The working tree is never
modified. It prints a table and the kill rate, and exits 1 if any mutant survives.

    python scripts/mutants.py                 # all mutants
    python scripts/mutants.py --list          # the table of mutants, without running
    python scripts/mutants.py --only 1,4      # some of them
    python scripts/mutants.py --only 21 -k v_target   # a quick check on a subset of the suite
                                              # (a mutant killed by a subset is killed by all)
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINKED = ["spec", "conformance", "conftest.py", "pyproject.toml"]


@dataclass(frozen=True)
class Mutant:
    bug: str
    file: str  # relative to runtime/
    old: str  # the exact line (without indentation differences: compared verbatim)
    new: str


MUTANTS = [
    Mutant("time index off by one (DDPM step runs at t = k, not k + 1)",
           "ddpm.py", "    t = k + 1", "    t = k"),
    Mutant("time normalised by T − 1",
           "schedule.py", "    return t / T", "    return t / (T - 1)"),
    Mutant("x0 clipping missing in DDIM",
           "ddim.py", "        x0 = x0.clamp(-1.0, 1.0)", "        x0 = x0"),
    Mutant("noise consumed in the wrong order (noise[T-1-k] at step k)",
           "ddpm.py", "            z = noise[k]", "            z = noise[T - 1 - k]"),
    Mutant("variance β_t used instead of β̃_t in the DDPM step",
           "schedule.py", '        "posterior_std": sqrt_nonneg(posterior_variance),',
           '        "posterior_std": sqrt_nonneg(beta_t),'),
    Mutant("residual skip dropped (TorchLean residual net)",
           "model.py", "            h = F.relu(h + block(h))", "            h = F.relu(block(h))"),
    Mutant("missing sqrt on ᾱ_t",
           "schedule.py", '        "sqrt_alpha_bars": sqrt_nonneg(alpha_bars),',
           '        "sqrt_alpha_bars": alpha_bars,'),
    Mutant("wrong sign of the score term in the PF ODE drift",
           "pf_ode.py", "    return (drift_x * x.to(wd) + drift_eps * eps_hat).to(x.dtype)",
           "    return (drift_x * x.to(wd) - drift_eps * eps_hat).to(x.dtype)"),
    Mutant("time channel placed first instead of last",
           "model.py", "    return torch.cat([x, time], dim=-3)",
           "    return torch.cat([time, x], dim=-3)"),
    Mutant("strided DDIM steps to t − 1 instead of the grid's next time",
           "ddim.py", "        x = ddim_step_between(sched, model, ts[i], ts[i + 1], x, eta, z, clip)",
           "        x = ddim_step_between(sched, model, ts[i], ts[i] - 1, x, eta, z, clip)"),
    Mutant("TorchLean's PF ODE drift (the ½ on the score term missing)",
           "pf_ode.py", "        drift_eps = 0.5 * safe_div(beta, sigma)",
           "        drift_eps = safe_div(beta, sigma)"),
    Mutant("TorchLean's Euler time order (drift read at h, 2h, …, 1)",
           "pf_ode.py", "        t_i = 1.0 - i * h", "        t_i = (i + 1) * h"),
    Mutant("FiLM scale applied as r·scale instead of r·(1 + scale)",
           "model.py", "        r = self.norm2(r) * (1 + scale) + shift",
           "        r = self.norm2(r) * scale + shift"),
    Mutant("loss regresses x0 instead of ε",
           "loss.py", "    return mse(model(x_t, t_norm), eps)", "    return mse(model(x_t, t_norm), x0)"),
    Mutant("safe_div without EPS",
           "core.py", "    return x / (y + EPS)", "    return x / y"),
    Mutant("cosine schedule without the max_beta clamp",
           "schedule.py", "    return torch.clamp(1.0 - f[1:] / f[:-1], max=max_beta)",
           "    return 1.0 - f[1:] / f[:-1]"),
    Mutant("DDIM grid rounded down instead of half-up",
           "ddim.py", "    return [(T * (n - i) + n // 2) // n for i in range(n + 1)]",
           "    return [(T * (n - i)) // n for i in range(n + 1)]"),
    Mutant("per-sample t: every sample gets the first sample's coefficient",
           "schedule.py",
           "            values = self.table(name, dtype, like.device)[t.to(device=like.device)]  # (B,)",
           "            values = self.table(name, dtype, like.device)[t.to(device=like.device)][:1]"),
    Mutant("DDIM σ without η",
           "ddim.py", "    sigma = eta * sqrt_nonneg(safe_div(1.0 - ab_prev, 1.0 - ab)) * sqrt_nonneg(",
           "    sigma = sqrt_nonneg(safe_div(1.0 - ab_prev, 1.0 - ab)) * sqrt_nonneg("),
    Mutant("L_0 decoder variance β̃_1 (= 0) instead of β_1",
           "likelihood.py",
           '    log_scale = (0.5 * torch.log(sched.coef("beta_t", 1, x0))).to(x0.device, wd)',
           '    log_scale = (0.5 * torch.log(sched.coef("posterior_variance", 1, x0))).to(x0.device, wd)'),
    # --- prediction targets, timestep grids, zero terminal SNR, min-SNR, guidance ---
    Mutant("v built with the two square roots swapped",
           "prediction.py", "    return (sqrt_ab * eps.to(wd) - sqrt_1m * x0.to(wd)).to(x0.dtype)",
           "    return (sqrt_1m * eps.to(wd) - sqrt_ab * x0.to(wd)).to(x0.dtype)"),
    Mutant("x̂0 of a v-prediction with the wrong sign",
           "prediction.py", "        return sqrt_ab * x_t - sqrt_1m * out",
           "        return sqrt_ab * x_t + sqrt_1m * out"),
    Mutant("ε̂ of an x0-prediction divided by √ᾱ instead of √(1 − ᾱ)",
           "prediction.py", "    return safe_div(x_t - sqrt_ab * out, sqrt_1m)",
           "    return safe_div(x_t - sqrt_ab * out, sqrt_ab)"),
    Mutant("min-SNR applied as max",
           "prediction.py", "        return torch.minimum(s, g)", "        return torch.maximum(s, g)"),
    Mutant("an ε-model sampled at ᾱ_T = 0 without the error (per-sample t unchecked)",
           "prediction.py",
           "    hit = bool((t >= first).any()) if isinstance(t, Tensor) else t >= first",
           "    hit = False if isinstance(t, Tensor) else t >= first"),
    Mutant("SNR as (1 − ᾱ)/ᾱ",
           "schedule.py", '        "snr": safe_div(alpha_bars, one_minus_alpha_bars),',
           '        "snr": safe_div(one_minus_alpha_bars, alpha_bars),'),
    Mutant("min-SNR weight computed but not applied to the loss",
           "loss.py", "        losses = losses * weight.to(device=losses.device, dtype=wd)",
           "        losses = losses"),
    Mutant("trailing grid starts at T − 1 (diffusers' 0-based times taken as ours)",
           "schedule.py", "        times = [_round_half_even(T * (n - i), n) for i in range(n)]",
           "        times = [_round_half_even(T * (n - i), n) - 1 for i in range(n)]"),
    Mutant("leading grid without the +1 (diffusers' 0-based times taken as ours)",
           "schedule.py", "        times = [1 + (n - 1 - i) * (T // n) for i in range(n)]",
           "        times = [(n - 1 - i) * (T // n) for i in range(n)]"),
    Mutant("linspace grid rounded down instead of to nearest",
           "schedule.py",
           "        times = [_round_half_even((n - 1) + (n - 1 - i) * (T - 1), n - 1) for i in range(n)]",
           "        times = [((n - 1) + (n - 1 - i) * (T - 1)) // (n - 1) for i in range(n)]"),
    Mutant("zero terminal SNR shifted but not rescaled (√ᾱ_1 changes)",
           "schedule.py", "    ab = (s1 * ((s - sT) / (s1 - sT))) ** 2", "    ab = (s - sT) ** 2"),
    Mutant("guidance mixes the outputs the wrong way round (cond and uncond swapped)",
           "guidance.py", "        cond, uncond = out.chunk(2)", "        uncond, cond = out.chunk(2)"),
    Mutant("conditional net ignores its label (label embedding not added)",
           "model.py", "        silu_e = F.silu(e if extra is None else e + extra)  # (B, E)",
           "        silu_e = F.silu(e)  # (B, E)"),
]


def check_applicable(mutants: list[Mutant]) -> None:
    """Every old line must occur exactly once in its file (the source may have moved on)."""
    problems = []
    for i, m in enumerate(mutants, 1):
        lines = (ROOT / "runtime" / m.file).read_text().splitlines()
        count = lines.count(m.old)
        if count != 1:
            problems.append(f"mutant {i} ({m.bug}): runtime/{m.file} has {count} lines equal to\n"
                            f"    {m.old!r}")
    if problems:
        sys.exit("mutants.py: the runtime source changed; update MUTANTS:\n" + "\n".join(problems))


def make_workdir() -> Path:
    work = Path(tempfile.mkdtemp(prefix="diffspec-mutants-"))
    shutil.copytree(ROOT / "runtime", work / "runtime",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in LINKED:
        (work / name).symlink_to(ROOT / name)
    return work


def env_for(work: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(work) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # a stale .pyc of another mutant must never be used
    env.setdefault("HYPOTHESIS_PROFILE", "dev")
    return env


def run_suite(work: Path, select: str = "") -> tuple[bool, str, float]:
    """(passed, first failing test or '', seconds); `select` is a pytest -k expression."""
    start = time.perf_counter()
    extra = ["-k", select] if select else []
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "conformance", "-x", "-q", "-p", "no:cacheprovider",
         *extra],
        cwd=work, env=env_for(work), capture_output=True, text=True,
    )
    seconds = time.perf_counter() - start
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", proc.stdout, flags=re.M)
    detail = failed[0] if failed else (proc.stdout.strip().splitlines() or ["?"])[-1]
    return proc.returncode == 0, detail, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="print the mutants and exit")
    parser.add_argument("--only", default="", help="comma-separated mutant numbers (1-based)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("-k", dest="select", default="",
                        help="run only the conformance tests matching this pytest -k expression")
    args = parser.parse_args()

    check_applicable(MUTANTS)
    chosen = [int(s) for s in args.only.split(",") if s.strip()] or range(1, len(MUTANTS) + 1)
    if args.list:
        for i in chosen:
            m = MUTANTS[i - 1]
            print(f"{i:>2}  runtime/{m.file}: {m.bug}\n      - {m.old.strip()}\n      + {m.new.strip()}")
        return 0

    work = make_workdir()
    try:
        probe = subprocess.run([sys.executable, "-c", "import runtime; print(runtime.__file__)"],
                               cwd=work, env=env_for(work), capture_output=True, text=True)
        if not probe.stdout.strip().startswith(str(work)):
            sys.exit(f"mutants.py: the copy is not what Python imports ({probe.stdout.strip()!r})")
        ok, detail, seconds = run_suite(work, args.select)
        print(f"baseline (unmutated copy): {'passes' if ok else 'FAILS: ' + detail} ({seconds:.0f} s)")
        if not ok:
            return 2
        rows = []
        for i in chosen:
            m = MUTANTS[i - 1]
            path = work / "runtime" / m.file
            original = path.read_text()
            lines = original.splitlines(keepends=True)
            index = [line.rstrip("\n") for line in lines].index(m.old)
            lines[index] = m.new + "\n"
            path.write_text("".join(lines))
            try:
                survived, detail, seconds = run_suite(work, args.select)
            finally:
                path.write_text(original)
            rows.append((i, m, not survived, detail, seconds))
            status = "killed  " if not survived else "SURVIVED"
            print(f"{i:>2} {status} {seconds:5.1f} s  runtime/{m.file}: {m.bug}", flush=True)
            if not survived:
                print(f"{'':>16}by {detail}", flush=True)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    killed = sum(1 for r in rows if r[2])
    print()
    print("| # | bug | file | killed by |")
    print("|---|-----|------|-----------|")
    for i, m, was_killed, detail, _ in rows:
        by = detail.split("::", 1)[-1] if was_killed else "**SURVIVED**"
        print(f"| {i} | {m.bug} | runtime/{m.file} | {by} |")
    print(f"\nkill rate: {killed}/{len(rows)} = {100.0 * killed / max(1, len(rows)):.0f}%")
    return 0 if killed == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())

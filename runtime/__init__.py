"""diffspec's runtime: the PyTorch twins of every `spec` function, batched, on any device.

Each module mirrors the spec module of the same name, and each spec function has a twin with the
same name (`runtime.forward.q_sample`, `runtime.ddim.ddim_step`, …); `conformance/` proves them
equal. The runtime never imports `spec`. Differences from the spec, all deliberate:

* a leading batch axis; a time index `t` is a Python int (one time for the
  batch) or a (B,) LongTensor (one time per sample); per-sample results equal the spec's;
* `runtime.schedule.Schedule` (alias `VPSchedule`) computes every coefficient table once in
  float64 (with the spec's EPS / sqrt_nonneg / safe_div placements) and casts each table once
  per (dtype, device); every table is T + 1 long, indexed by t and named after its formula
  (`sched.sqrt_alpha_bar.at(t, x)`); steps gather `table[t]` with no host synchronisation;
* float64, float32 and bfloat16 inputs; results come back in the input's dtype; the few
  elementwise operations of a step run in at least float32, and per-step coefficients are
  computed in float64;
* models are `torch.nn.Module`s called as `model(x, t_norm)` (`EpsResidualConvNet`,
  `EpsConvNet`, `EpsFiLMNet`, `CondFiLMNet`), with `to_spec_params` / `from_spec_params` so
  one dict of arrays drives both sides; `runtime.model.MODELS` (kind -> config class, module
  class) is the one table of them that checkpoints and commands look up;
* samplers take explicit noise (the spec's layout with a batch axis after the step axis,
  (steps, B, C, H, W)) or a `torch.Generator`, show a tqdm bar with `progress=True`, and run
  under `torch.no_grad()`;
* `likelihood.vlb_terms` / `bits_per_dim` return per-sample values ((B, T + 1) and (B,)).

Notation and the time convention are those of `spec` (t ∈ {0..T}, the model is fed t/T).
"""

"""diffspec's conformance suite: proof that `runtime` (PyTorch) computes what `spec` (NumPy) says.

Layout (read in this order):

* `records_<module>.py`  one file per spec module (spec/ddpm.py → records_ddpm.py): a `Record`
                     per name that spec module lists in `__all__`: the runtime twin, a hypothesis
                     strategy for a plan, a builder from plan to arguments, per-dtype tolerance
                     overrides (each with its reason) and a `Skip(predicate, reason)` for the
                     plans a dtype leaves out. Types and constants may be exempt, with a reason.
* `registry.py`      gathers the records files; the list of spec modules is read from `spec`.
* `record.py`        the `Record` type; `plans.py` the plans, builders, tolerances and skips
                     that several records files share.
* `markers.py`       how each argument reaches each side (`Batched`, `PerSample`, `Sched`,
                     `Model`, …): every marker carries its own conversions (`test_markers.py`).
* `tolerances.py`    one tolerance table per dtype (elementwise |a − e| ≤ atol + rtol·|e|), `Tol`
                     and `Skip` (an override and a left-out set of plans, each with its reason),
                     and the device list ($DIFFSPEC_DEVICES, e.g. "cpu,cuda"; default: CPU, plus CUDA when
                     torch sees it).
* `strategies.py`    the input strategies, as named nouns (schedules, time indices, grids, images,
                     ε-models…), each with its builder; `test_strategies.py` checks them.
* `harness.py`       running a case: a batch to the runtime, one sample at a time to the spec
                     (inputs rounded to the runtime's dtype first so only arithmetic is judged),
                     the comparison, and the one-line reproduction.
* `gaussian.py`      the exact ε-predictor of Gaussian data, once in NumPy and once in torch.
* `test_conformance.py`  the generic tests over the registry; `test_coverage.py` fails for any
                     spec name without a record and any spec module without its records file.

Reading a failure: the first line of the assertion is

    REPRO <name> dtype=<dtype> device=<device> seed=<seed> <argument shapes> | python -m conformance …

and the command after `|` reruns exactly that case (`python -m conformance --help`).
"""

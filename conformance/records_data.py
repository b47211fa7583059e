"""Records of `spec.data`: the data range and the noised sample."""

from __future__ import annotations

from conformance import strategies as S
from conformance.markers import Arr, Batched, Call
from conformance.plans import batch_plans, images, rng_array, sched_of, small_arrays, time_of
from conformance.record import Records

RECORDS = Records()
record = RECORDS.add

record(
    name="to_diffusion_range", plan=small_arrays, batched=False,
    build=lambda p: Call([Arr(S.binned_images(p["seed"], p["shape"], 256) * 0.5 + 0.5)]),
)
record(
    name="from_diffusion_range", plan=small_arrays, batched=False,
    build=lambda p: Call([Arr(rng_array(p, 0, p["shape"]))]),
)
record(
    name="noised_sample_from_eps", plan=batch_plans(),
    build=lambda p: Call([sched_of(p), Batched(images(p, 0)), time_of(p["time"]), Batched(images(p, 1))]),
)

"""The runtime's machinery: what the commands need that is not diffusion math.

`runtime/` holds the spec twins (schedule, forward, prediction, ddpm, ddim, …) and the commands
(`runtime.train`, `runtime.sample`, `runtime.evaluate`, `runtime.data`); this package holds the
rest, each module one concern:

    cli           user errors, exit statuses, `run_main`, the argparse parser that exits 2
    config        the commands' configs (frozen dataclasses) and the parsers built over them
    checkpoint    save, load and verify training checkpoints
    atomic        write a file so that a reader sees the old or the new one, never a part
    runlock       one writer per run folder
    limits        the largest sizes a command accepts before allocating
    distributed   torchrun: ranks, world size, the process group
    fast_kernels  the start-up probe of `--fast-kernels`
    lr_schedule   the learning rate over a run (constant, cosine with warm-up)
    artifacts     PNG/PPM/NPY writers and image grids
    quality       the sample-quality figure (Fréchet distance in a small classifier's features)
"""

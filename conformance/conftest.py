"""Conformance-suite setup.

1. Threads: the suite's tensors are tiny (4×4 to 8×8 images, 8 channels); with several intra-op
   threads a convolution spends ~1000× longer in thread hand-off than in arithmetic (measured on
   the 2-core machine under load: 16 ms vs 0.016 ms per call), so torch runs single-threaded.
   Set DIFFSPEC_THREADS to override.
2. TF32: on NVIDIA GPUs torch lets cuDNN run float32 convolutions in TF32 (10-bit mantissa) by
   default. The float32 rows of the tolerance table are for float32 arithmetic, so TF32 is
   switched off here; a runtime user who enables it trades float32 accuracy for speed knowingly.
"""

import os

import torch

torch.set_num_threads(int(os.environ.get("DIFFSPEC_THREADS", "1")))
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False

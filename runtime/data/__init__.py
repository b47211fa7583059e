"""Data for the runtime: the spec twins of `spec.data` and the data-set loaders.

The twins (`to_diffusion_range`, `from_diffusion_range`, `noised_sample_from_eps`) live in
`runtime.data.transforms`; loaders and converters live in the other modules of this package;
`python -m runtime.data` is the conversion / checking command (`runtime/data/__main__.py`).
"""

from runtime.data.transforms import (
    from_diffusion_range,
    noised_sample_from_eps,
    to_diffusion_range,
)

__all__ = ["from_diffusion_range", "noised_sample_from_eps", "to_diffusion_range"]

# Data sets: loading, validation, conversion (runtime/data/datasets.py, runtime/data/convert.py).
from runtime.data.convert import (  # noqa: E402
    CIFAR10_MD5,
    ConversionReport,
    convert_cifar10,
    convert_image_folder,
)
from runtime.data.datasets import (  # noqa: E402
    DATASETS,
    SPLITS,
    DataError,
    Dataset,
    describe,
    load_dataset,
    load_digits,
    load_folder,
    load_npy_array,
    load_pair,
    save_folder,
    validate_images,
    validate_labels,
    validate_pair,
)

__all__ += [
    "CIFAR10_MD5",
    "DATASETS",
    "SPLITS",
    "ConversionReport",
    "DataError",
    "Dataset",
    "convert_cifar10",
    "convert_image_folder",
    "describe",
    "load_dataset",
    "load_digits",
    "load_folder",
    "load_npy_array",
    "load_pair",
    "save_folder",
    "validate_images",
    "validate_labels",
    "validate_pair",
]

"""Loading and validation (`runtime.data.datasets`) at the API level.

Every validation failure is a `DataError` whose message is one line naming the file, the value
seen and what is expected.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_data_fixtures import good_arrays, write_folder

from runtime.data import (
    DATASETS,
    DataError,
    load_dataset,
    load_npy_array,
    load_pair,
    save_folder,
    validate_images,
    validate_labels,
)
from runtime.data.datasets import DIGITS_TRAIN_SIZE
from runtime.plumbing.cli import UserError

# --------------------------------------------------------------------------- digits


def test_digits_shapes_range_and_split():
    train, test = load_dataset("digits"), load_dataset("digits", split="test")
    assert train.x.shape == (DIGITS_TRAIN_SIZE, 1, 8, 8) and test.x.shape == (297, 1, 8, 8)
    for ds in (train, test):
        assert ds.x.dtype == np.float32 and ds.y.dtype == np.int64
        assert ds.x.min() == 0.0 and ds.x.max() == 1.0
        assert set(np.unique(ds.y)) == set(range(10)) and ds.num_classes == 10
        assert ds.image_shape == (1, 8, 8) and len(ds) == ds.y.shape[0]
        # values are k/16 exactly (the raw digits are integers 0..16)
        np.testing.assert_array_equal(ds.x * 16, np.round(ds.x * 16))


def test_digits_split_is_deterministic_and_a_partition():
    from sklearn.datasets import load_digits

    raw = load_digits()
    train, test = load_dataset("digits"), load_dataset("digits", split="test")
    # every original image is in exactly one split: compare as byte strings of (image, label)
    key = lambda x, y: {xi.tobytes() + bytes([int(yi)]) for xi, yi in zip(x, y, strict=True)}  # noqa: E731
    whole = key((raw.images / 16).astype(np.float32)[:, None], raw.target)
    assert key(train.x, train.y) | key(test.x, test.y) == whole
    assert len(train) + len(test) == 1797
    # the split does not depend on the cache or on global random state
    from runtime.data.datasets import _digits_arrays

    _digits_arrays.cache_clear()
    np.random.seed(123)
    again = load_dataset("digits", split="test")
    np.testing.assert_array_equal(again.x, test.x)
    np.testing.assert_array_equal(again.y, test.y)


def test_dataset_arrays_are_read_only():
    ds = load_dataset("digits")
    with pytest.raises(ValueError):
        ds.x[0, 0, 0, 0] = 0.5


# --------------------------------------------------------------------------- loader arguments


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"name": "mnist"}, "unknown dataset: got 'mnist'; expected one of digits, cifar10"),
        ({"name": "digits", "split": "val"}, "unknown split: got 'val'"),
        ({"name": "digits", "data_dir": "somewhere"}, "reads no folder"),
        ({"name": "cifar10"}, "needs a data folder"),
        ({"name": "npy", "data_dir": "/no/such/dir"}, "/no/such/dir: folder not found"),
    ],
)
def test_loader_argument_errors(kwargs, fragment):
    with pytest.raises(DataError) as info:
        load_dataset(**kwargs)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_data_error_is_a_user_error_and_a_value_error():
    assert issubclass(DataError, UserError) and issubclass(DataError, ValueError)
    assert DATASETS == ("digits", "cifar10", "image-folder", "npy")


# --------------------------------------------------------------------------- folders


def test_npy_folder_round_trip(tmp_path):
    arrays = good_arrays()
    write_folder(tmp_path, arrays)
    for split in ("train", "test"):
        ds = load_dataset("npy", tmp_path, split)
        np.testing.assert_array_equal(ds.x, arrays[f"{split}_x.npy"])
        np.testing.assert_array_equal(ds.y, arrays[f"{split}_y.npy"])
        assert ds.name == "npy" and ds.split == split and ds.num_classes == 3


def test_uint8_is_converted_on_load(tmp_path):
    arrays = good_arrays()
    arrays["train_x.npy"] = np.arange(6 * 16, dtype=np.uint8).reshape(6, 1, 4, 4) * 2
    arrays["train_y.npy"] = arrays["train_y.npy"].astype(np.uint8)
    write_folder(tmp_path, arrays)
    ds = load_dataset("npy", tmp_path)
    assert ds.x.dtype == np.float32 and ds.y.dtype == np.int64
    np.testing.assert_array_equal(ds.x, arrays["train_x.npy"].astype(np.float32) / 255)
    assert ds.x.max() == 190 / 255


def test_float64_is_accepted_as_float32(tmp_path):
    arrays = good_arrays()
    arrays["train_x.npy"] = arrays["train_x.npy"].astype(np.float64)
    write_folder(tmp_path, arrays)
    assert load_dataset("npy", tmp_path).x.dtype == np.float32


def test_num_classes_counts_labels_of_both_splits(tmp_path):
    arrays = good_arrays()
    arrays["train_y.npy"][:] = 0
    arrays["test_y.npy"][:] = 4
    write_folder(tmp_path, arrays)
    assert load_dataset("npy", tmp_path, "train").num_classes == 5
    assert load_dataset("npy", tmp_path, "test").num_classes == 5


def test_cifar10_folder_requires_3x32x32_and_10_classes(tmp_path):
    arrays = good_arrays(shape=(3, 32, 32))
    write_folder(tmp_path / "ok", arrays)
    assert load_dataset("cifar10", tmp_path / "ok").num_classes == 10
    write_folder(tmp_path / "small", good_arrays(shape=(3, 16, 16)))
    with pytest.raises(
        DataError, match=r"wrong image size for cifar10: got CxHxW 3x16x16; expected 3x32x32"
    ):
        load_dataset("cifar10", tmp_path / "small")
    arrays["train_y.npy"][0] = 10
    write_folder(tmp_path / "labels", arrays)
    with pytest.raises(
        DataError,
        match=r"train_y.npy: label out of range: got max 10; expected labels in \[0, 10\)",
    ):
        load_dataset("cifar10", tmp_path / "labels")


# --------------------------------------------------------------------------- each failure


def _corrupt(name: str, arrays: dict, tmp_path):
    """Write a folder with one defect; returns the folder."""
    rng = np.random.default_rng(1)
    if name == "truncated":
        write_folder(tmp_path, arrays)
        data = (tmp_path / "train_x.npy").read_bytes()
        (tmp_path / "train_x.npy").write_bytes(data[: len(data) // 2])
        return tmp_path
    if name == "empty-file":
        write_folder(tmp_path, arrays)
        (tmp_path / "train_x.npy").write_bytes(b"")
        return tmp_path
    if name == "garbage":
        write_folder(tmp_path, arrays)
        (tmp_path / "train_x.npy").write_bytes(b"definitely not numpy" * 10)
        return tmp_path
    if name == "pickle":
        arrays["train_x.npy"] = np.array([{"a": 1}] * 6, dtype=object)
    elif name == "rank":
        arrays["train_x.npy"] = rng.random((6, 4, 4), dtype=np.float32)
    elif name == "nan":
        arrays["train_x.npy"][2, 0, 1, 3] = np.nan
    elif name == "inf":
        arrays["train_x.npy"][0, 0, 0, 0] = np.inf
    elif name == "range":
        arrays["train_x.npy"] = arrays["train_x.npy"] * 255
    elif name == "negative":
        arrays["train_x.npy"][0, 0, 0, 0] = -0.25
    elif name == "x-dtype":
        arrays["train_x.npy"] = np.ones((6, 1, 4, 4), dtype=np.int32)
    elif name == "empty":
        arrays["train_x.npy"] = np.zeros((0, 1, 4, 4), dtype=np.float32)
        arrays["train_y.npy"] = np.zeros((0,), dtype=np.int64)
    elif name == "y-rank":
        arrays["train_y.npy"] = arrays["train_y.npy"][:, None]
    elif name == "y-dtype":
        arrays["train_y.npy"] = arrays["train_y.npy"].astype(np.float32)
    elif name == "y-negative":
        arrays["train_y.npy"][3] = -1
    elif name == "n-mismatch":
        arrays["train_y.npy"] = arrays["train_y.npy"][:5]
    elif name == "missing":
        del arrays["train_y.npy"]
    elif name == "npz":
        write_folder(tmp_path, arrays)
        np.savez(tmp_path / "train_x.npy.npz", a=arrays["train_x.npy"])
        (tmp_path / "train_x.npy.npz").replace(tmp_path / "train_x.npy")
        return tmp_path
    return write_folder(tmp_path, arrays)


FAILURES = {
    # name: fragments of the one-line message
    "truncated": ["train_x.npy: not a readable .npy array (truncated or corrupt?)"],
    "empty-file": ["train_x.npy: not a readable .npy array"],
    "garbage": ["train_x.npy: not a readable .npy array"],
    "pickle": ["train_x.npy: not a readable .npy array", "allow_pickle"],
    "rank": [
        "train_x.npy: images have the wrong rank: got shape (6, 4, 4) (rank 3); expected rank 4"
    ],
    "nan": [
        "train_x.npy: non-finite image values: got 1 NaN/inf value(s), the first at index (2, 0, 1, 3)"
    ],
    "inf": ["non-finite image values", "(0, 0, 0, 0) (inf)"],
    "range": [
        "image values out of range: got min",
        "expected values in [0, 1]",
        "store uint8 or divide by 255",
    ],
    "negative": ["image values out of range: got min -0.25"],
    "x-dtype": ["unsupported image dtype: got int32; expected float32/float64 in [0, 1] or uint8"],
    "empty": ["train_x.npy: no images: got shape (0, 1, 4, 4); expected N >= 1"],
    "y-rank": [
        "train_y.npy: labels have the wrong rank: got shape (6, 1) (rank 2); expected rank 1"
    ],
    "y-dtype": ["train_y.npy: labels are not integers: got dtype float32"],
    "y-negative": ["train_y.npy: negative label: got min -1; expected labels >= 0"],
    "n-mismatch": ["image and label counts differ: got 6 images and 5 labels"],
    "missing": ["train_y.npy: file not found"],
    "npz": ["train_x.npy: is an .npz archive"],
}


@pytest.mark.parametrize("name", sorted(FAILURES))
def test_each_failure_is_one_clear_line(name, tmp_path):
    folder = _corrupt(name, good_arrays(), tmp_path)
    with pytest.raises(DataError) as info:
        load_dataset("npy", folder)
    message = str(info.value)
    assert "\n" not in message
    for fragment in FAILURES[name]:
        assert fragment in message, (fragment, message)


def test_labels_out_of_range_for_given_class_count(tmp_path):
    write_folder(tmp_path, good_arrays(classes=3))
    with pytest.raises(
        DataError, match=r"label out of range: got max 2; expected labels in \[0, 2\)"
    ):
        load_pair(tmp_path / "train_x.npy", tmp_path / "train_y.npy", num_classes=2)


def test_validators_without_a_file_name():
    with pytest.raises(DataError, match=r"^images have the wrong rank"):
        validate_images(np.zeros((2, 2), np.float32))
    with pytest.raises(DataError, match=r"^labels are not an array"):
        validate_labels([0, 1])  # type: ignore[arg-type]
    with pytest.raises(DataError, match=r"labels are not integers: got dtype bool"):
        validate_labels(np.array([True, False]))


def test_load_npy_array_on_a_folder(tmp_path):
    with pytest.raises(DataError, match="is a folder"):
        load_npy_array(tmp_path)


# --------------------------------------------------------------------------- atomic writes


def test_save_folder_writes_into_new_and_existing_folders(tmp_path):
    arrays = good_arrays()
    out = save_folder(tmp_path / "a" / "b" / "out", arrays)
    assert sorted(p.name for p in out.iterdir()) == sorted(arrays)
    arrays["train_x.npy"] = arrays["train_x.npy"] / 2
    (out / "notes.txt").write_text("kept")
    save_folder(out, arrays)  # existing folder: files replaced, others kept
    np.testing.assert_array_equal(np.load(out / "train_x.npy"), arrays["train_x.npy"])
    assert (out / "notes.txt").read_text() == "kept"
    assert sorted(p.name for p in (tmp_path / "a" / "b").iterdir()) == ["out"]


@pytest.mark.parametrize("exc", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_save_folder_leaves_nothing_on_failure(tmp_path, monkeypatch, exc):
    import runtime.data.datasets as datasets

    calls = []
    real_save = np.save

    def failing_save(f, arr, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise exc
        return real_save(f, arr, **kw)

    monkeypatch.setattr(datasets.np, "save", failing_save)
    expected = DataError if isinstance(exc, OSError) else KeyboardInterrupt
    with pytest.raises(expected):
        save_folder(tmp_path / "new" / "out", good_arrays())
    assert list(tmp_path.iterdir()) == []  # no output, no temp folder, no created parent


def test_save_folder_refuses_unwritable_targets(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="exists and is not a folder"):
        save_folder(tmp_path / "file", good_arrays())
    with pytest.raises(DataError, match="cannot write the output folder"):
        save_folder(tmp_path / "file" / "sub" / "out", good_arrays())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]

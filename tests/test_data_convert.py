"""Conversions (`runtime.data.convert`): a fake CIFAR-10 archive and folders of generated images."""

from __future__ import annotations

import hashlib
import os
import pickle

import numpy as np
import pytest
from test_data_fixtures import (
    BATCHES,
    cifar_pixel,
    fake_cifar_batch,
    write_fake_cifar_archive,
    write_image_tree,
)

from runtime.data import CIFAR10_MD5, DataError, convert_cifar10, convert_image_folder, load_dataset
from runtime.data.convert import file_md5

# --------------------------------------------------------------------------- CIFAR-10


def test_fake_cifar_archive_converts_and_loads(tmp_path):
    archive = write_fake_cifar_archive(tmp_path / "cifar-10-python.tar.gz", per_batch=6)
    report = convert_cifar10(archive, tmp_path / "cifar", verify_md5=False, progress=False)
    assert (report.n_train, report.n_test, report.image_shape) == (30, 6, (3, 32, 32))
    assert sorted(os.listdir(tmp_path / "cifar")) == [
        "test_x.npy",
        "test_y.npy",
        "train_x.npy",
        "train_y.npy",
    ]
    train, test = (
        load_dataset("cifar10", tmp_path / "cifar"),
        load_dataset("cifar10", tmp_path / "cifar", "test"),
    )
    assert train.x.shape == (30, 3, 32, 32) and test.x.shape == (6, 3, 32, 32)
    assert train.x.dtype == np.float32 and train.y.dtype == np.int64 and train.num_classes == 10
    # on disk: float32 in [0, 1] and int64, exactly the documented layout
    assert np.load(tmp_path / "cifar" / "train_x.npy").dtype == np.float32
    assert np.load(tmp_path / "cifar" / "train_y.npy").dtype == np.int64
    # batches in order data_batch_1..5; each row is R plane, G plane, B plane, row-major
    for b in range(5):
        for i in range(6):
            n = b * 6 + i
            assert train.y[n] == (b + i) % 10
            for c in range(3):
                assert train.x[n, c, 5, 7] == np.float32(cifar_pixel(b, i, c)) / np.float32(255)
            assert train.x[n, 0, 0, 0] == 1.0 and train.x[n, 0, 0, 1] == 0.0
    np.testing.assert_array_equal(test.y, [(5 + i) % 10 for i in range(6)])
    assert test.x[2, 1, 31, 31] == np.float32(cifar_pixel(5, 2, 1)) / np.float32(255)


def test_md5_mismatch_is_an_error_and_writes_nothing(tmp_path):
    archive = write_fake_cifar_archive(tmp_path / "cifar-10-python.tar.gz", per_batch=2)
    actual = hashlib.md5(archive.read_bytes()).hexdigest()
    assert file_md5(archive, progress=False) == actual
    with pytest.raises(DataError) as info:
        convert_cifar10(archive, tmp_path / "out", progress=False)
    assert str(info.value) == (
        f"{archive}: MD5 mismatch (corrupt, incomplete or not the official archive): "
        f"got {actual}; expected {CIFAR10_MD5}"
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("<omit>", "batch data_batch_3 not found in the archive"),
        (b"not a pickle", "[data_batch_3]: unreadable batch"),
        (
            pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}, protocol=2),
            "wrong batch contents",
        ),
        (
            pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, protocol=2),
            "wrong b'data': got uint8 (2, 100); expected uint8 (N, 3072)",
        ),
        (
            pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, protocol=2),
            "wrong b'labels': got shape (1,) for 2 images",
        ),
        (
            pickle.dumps({**fake_cifar_batch(2, 2), b"labels": [3, 12]}, protocol=2),
            "label out of range: got max 12; expected labels in [0, 10)",
        ),
    ],
)
def test_malformed_batches_are_reported(tmp_path, override, fragment):
    payload = override.encode() if isinstance(override, str) else override
    archive = write_fake_cifar_archive(
        tmp_path / "c.tar.gz", per_batch=2, batches={"data_batch_3": payload}
    )
    with pytest.raises(DataError) as info:
        convert_cifar10(archive, tmp_path / "out", verify_md5=False, progress=False)
    assert fragment in str(info.value) and "\n" not in str(info.value)
    assert sorted(os.listdir(tmp_path)) == ["c.tar.gz"]


def test_unpickler_refuses_arbitrary_globals(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    payload = pickle.dumps({b"data": Evil(), b"labels": []}, protocol=2)
    archive = write_fake_cifar_archive(
        tmp_path / "c.tar.gz", per_batch=2, batches={"test_batch": payload}
    )
    with pytest.raises(DataError, match=r"is not allowed in a CIFAR batch"):
        convert_cifar10(archive, tmp_path / "out", verify_md5=False, progress=False)


@pytest.mark.parametrize("content", [b"", b"garbage" * 100, None])
def test_bad_archives(tmp_path, content):
    archive = tmp_path / "c.tar.gz"
    if content is not None:
        archive.write_bytes(content)
        fragment = "not a readable tar archive"
    else:
        fragment = "file not found"
    with pytest.raises(DataError, match=fragment):
        convert_cifar10(archive, tmp_path / "out", verify_md5=False, progress=False)


def test_truncated_archive(tmp_path):
    archive = write_fake_cifar_archive(tmp_path / "c.tar.gz", per_batch=6)
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(DataError):
        convert_cifar10(archive, tmp_path / "out", verify_md5=False, progress=False)
    assert sorted(os.listdir(tmp_path)) == ["c.tar.gz"]


# --------------------------------------------------------------------------- image folders


def test_image_folder_with_classes(tmp_path):
    write_image_tree(tmp_path / "src", with_classes=True)
    (tmp_path / "src" / "loose.png").write_bytes(b"")  # beside the class folders: ignored
    report = convert_image_folder(
        tmp_path / "src", tmp_path / "out", height=8, width=12, test_fraction=0.2, progress=False
    )
    assert report.class_names == ("cats", "dogs")
    assert report.skipped == (os.path.join("dogs", "broken.png"),)
    assert report.ignored == ("loose.png",)
    assert (report.n_train, report.n_test) == (4, 1)
    assert "skipped 1 unreadable file(s): dogs/broken.png" in report.summary()
    train = load_dataset("image-folder", tmp_path / "out")
    test = load_dataset("image-folder", tmp_path / "out", "test")
    assert train.x.shape == (4, 3, 8, 12) and test.x.shape == (1, 3, 8, 12)
    assert train.num_classes == 2
    x = np.concatenate([train.x, test.x])
    y = np.concatenate([train.y, test.y])
    assert sorted(y.tolist()) == [0, 0, 0, 1, 1]
    # every image became RGB: look for the expected flat colours (mode by mode)
    colours = {tuple(np.round(img[:, 4, 6] * 255).astype(int)) for img in x}
    assert (100, 100, 100) in colours  # grayscale L=100 → (100, 100, 100)
    assert (255, 255, 255) in colours  # fully transparent RGBA → white
    assert (0, 0, 255) in colours  # palette index 0 → blue
    assert (200, 10, 10) in colours  # RGB
    assert any(abs(g - 200) < 8 and r < 20 for r, g, _ in colours)  # the JPEG, lossy


def test_image_folder_flat_and_split_determinism(tmp_path):
    write_image_tree(tmp_path / "flat", with_classes=False)
    a = convert_image_folder(tmp_path / "flat", tmp_path / "a", 6, 6, 0.4, seed=3, progress=False)
    convert_image_folder(tmp_path / "flat", tmp_path / "b", 6, 6, 0.4, seed=3, progress=False)
    assert a.class_names == ("flat",) and len(a.skipped) == 1
    assert (a.n_train, a.n_test) == (3, 2)
    for split in ("train", "test"):
        da, db = (
            load_dataset("npy", tmp_path / "a", split),
            load_dataset("npy", tmp_path / "b", split),
        )
        np.testing.assert_array_equal(da.x, db.x)
        assert set(da.y.tolist()) == {0}
    # a different seed draws a different split
    outs = set()
    for seed in range(6):
        convert_image_folder(
            tmp_path / "flat", tmp_path / "s", 6, 6, 0.4, seed=seed, progress=False
        )
        outs.add(load_dataset("npy", tmp_path / "s", "test").x.tobytes())
    assert len(outs) > 1


def test_image_folder_default_size_is_64(tmp_path):
    write_image_tree(tmp_path / "src")
    report = convert_image_folder(tmp_path / "src", tmp_path / "out", progress=False)
    assert report.image_shape == (3, 64, 64)


def test_image_folder_centre_crop(tmp_path):
    from PIL import Image

    src = tmp_path / "src"
    src.mkdir()
    img = np.zeros((10, 30, 3), np.uint8)  # wide: left third red, middle green, right third blue
    img[:, :10, 0] = 255
    img[:, 10:20, 1] = 255
    img[:, 20:, 2] = 255
    for name in ("a.png", "b.png"):
        Image.fromarray(img).save(src / name)
    convert_image_folder(src, tmp_path / "out", 10, 10, 0.5, progress=False)
    x = load_dataset("npy", tmp_path / "out").x[0]
    np.testing.assert_allclose(x[:, 5, 5], [0, 1, 0], atol=0.02)  # the centre survives
    assert x[0].max() < 0.1 and x[2].max() < 0.1  # the sides are cropped away


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="folder not found"):
        convert_image_folder(tmp_path / "nope", tmp_path / "out", progress=False)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "bad.png").write_bytes(b"nope")
    with pytest.raises(DataError, match=r"too few readable images: got 0 \(1 unreadable"):
        convert_image_folder(tmp_path / "src", tmp_path / "out", progress=False)
    with pytest.raises(DataError, match=r"bad --test-fraction: got 1.0"):
        convert_image_folder(tmp_path / "src", tmp_path / "out", test_fraction=1.0, progress=False)
    assert not (tmp_path / "out").exists()


def test_all_batches_named(tmp_path):
    from runtime.data.convert import CIFAR10_BATCHES

    assert list(CIFAR10_BATCHES) == BATCHES

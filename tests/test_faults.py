"""Fault injection: what a hostile machine does to a trainer.

- kill -9 at chosen and at random moments (one of them in the middle of a checkpoint write),
  each followed by `--resume`: the run ends bit-identical to an uninterrupted one, and the run
  folder holds exactly what an uninterrupted run leaves (no lock file, no temporary file);
- two trainers started at once on one run folder: one trains, the other stops with exit
  status 2 naming the first; a `--resume` meanwhile is refused the same way; after kill -9 the
  folder is free at once;
- headers claiming huge sizes (`.npy`, checkpoint zip, CIFAR tar member and pickle, image
  dimensions): one line, exit status 2 (or the image skipped and named), nothing allocated;
- image bit depth from the file's format and mode, never from the pixel values;
- a checkpoint with one flipped bit, SIGTERM in every phase of a run, Ctrl-C inside an atomic
  write, a named pipe as data, train and test splits of different shapes, requests larger than
  memory, seeds and flags at their extremes, an empty --out, a resume hint for a folder with a
  space, a full disk: each ends with its documented exit status and one line, and leaves nothing
  behind;
- every command's --help documents the exit statuses.

The trainers run in processes forked from this one (torch and the digits are already loaded, so a
start costs milliseconds, not the seconds of a fresh interpreter), single-threaded, each with a
deadline. Linux only (fork, flock).
"""

from __future__ import annotations

import io
import os
import pickle
import re
import signal
import socket
import struct
import sys
import time
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from test_data_fixtures import write_fake_cifar_archive
from test_train_support import (
    assert_one_line_error,
    run_command,
    tiny_cond_run,  # noqa: F401 - fixture
    tiny_run,  # noqa: F401 - fixture
    write_data_folder,
)

from runtime.data.convert import convert_cifar10, convert_image_folder
from runtime.data.datasets import DataError, load_digits, save_folder
from runtime.plumbing.atomic import is_leftover, remove_leftovers, temp_path
from runtime.plumbing.checkpoint import load_checkpoint
from runtime.plumbing.cli import EXIT_FAILURE, run_main
from runtime.plumbing.runlock import LOCK_NAME, RunLocked, read_holder, run_lock
from runtime.train import main as train_main

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="fork and flock: Linux only")

STEPS = 24
RUN = ["--device", "cpu", "--dataset", "digits", "--n-total", "12", "--T", "10",
       "--hidden-c", "8", "--blocks", "1", "--batch-size", "4", "--log-every", "1",
       "--checkpoint-every", "1", "--n-samples", "2", "--sample-steps", "2", "--no-progress"]
DEADLINE_S = 60.0  # for any one forked trainer (a hang fails the test instead of blocking it)


# --------------------------------------------------------------------------- forked trainers


@pytest.fixture(scope="module")
def forkable(tmp_path_factory) -> None:
    """Import here, once, what a training run imports lazily (torch._dynamo through fused Adam,
    matplotlib, the digits), so that every forked child starts with it loaded."""
    from runtime.plumbing.artifacts import save_loss_plot

    load_digits("train")
    torch.optim.Adam([torch.zeros(1, requires_grad=True)], fused=True)
    save_loss_plot(tmp_path_factory.mktemp("warm") / "loss.png",
                   [{"step": 1, "loss": 1.0, "quartile_loss": [1.0] * 4}])


_CHILDREN: list[Child] = []


@pytest.fixture(autouse=True)
def _no_child_outlives_its_test():
    yield
    while _CHILDREN:
        _CHILDREN.pop().kill()


class Child:
    """`python -m runtime.train ARGV` (or another command's `main`) in a forked process; output
    goes to a file. `setup()` runs in the child first (a test's fault, planted there only)."""

    def __init__(self, argv: list[str], log: Path, kill_in_save: int | None = None,
                 env: dict[str, str] | None = None, setup: Callable[[], None] | None = None,
                 main: Callable | None = None) -> None:
        self.log = log
        self.returncode: int | None = None
        self.pid = os.fork()
        if self.pid == 0:  # the child: never returns into pytest
            code = 99
            try:
                fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                sys.stdout = sys.stderr = open(fd, "w", buffering=1, closefd=False)
                torch.set_num_threads(1)  # no OpenMP team after fork; the same bits every child
                os.environ.update(env or {})
                signal.signal(signal.SIGINT, signal.default_int_handler)
                if kill_in_save is not None:
                    _die_in_save(kill_in_save)
                if setup is not None:
                    setup()
                run_main(main or train_main, [str(a) for a in argv])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException:  # noqa: BLE001 - report and exit, whatever it was
                import traceback

                traceback.print_exc()
            finally:
                os._exit(code)
        _CHILDREN.append(self)

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:  # the child has not opened it yet
            return ""

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float = DEADLINE_S) -> int:
        end = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > end:
                self.kill()
                pytest.fail(f"a forked trainer ran past {timeout} s:\n{self.output()}")
            time.sleep(0.005)
        return self.returncode

    def wait_for(self, text: str, timeout: float = DEADLINE_S) -> None:
        end = time.monotonic() + timeout
        while text not in self.output():
            if self.poll() is not None or time.monotonic() > end:
                self.kill()
                pytest.fail(f"never printed {text!r}:\n{self.output()}")
            time.sleep(0.002)

    def kill(self) -> None:
        if self.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)


def _die_in_save(k: int) -> None:
    """Make the k-th torch.save of this process write a few bytes and then kill -9 itself."""
    real_save = torch.save
    count = [0]

    def save(obj, f, *args, **kwargs):
        count[0] += 1
        if count[0] == k:
            f.write(b"PK\x03\x04 half a checkpoint")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return real_save(obj, f, *args, **kwargs)

    torch.save = save


def _same_run(a: dict, b: dict) -> None:
    """Bit-identical training state: weights, EMA, Adam, generators, data cursor, loss curve."""
    assert a["step"] == b["step"]
    for key in ("model", "ema"):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}[{name}] differs"
    for index, state in a["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(value, b["optimizer"]["state"][index][name]), (index, name)
    for name in ("t", "noise"):
        assert torch.equal(a["rng"][name], b["rng"][name]), name
    assert torch.equal(a["rng"]["data"]["generator"], b["rng"]["data"]["generator"])
    assert a["rng"]["data"]["pos"] == b["rng"]["data"]["pos"]
    assert a["history"]["curve"] == b["history"]["curve"]


def test_kill_9_anywhere_then_resume_is_bit_identical_and_leaves_nothing(tmp_path, forkable):
    rng = np.random.default_rng(14)
    straight = tmp_path / "straight"
    ref = Child([*RUN, "--steps", STEPS, "--out", straight], tmp_path / "ref.log")
    assert ref.wait() == 0, ref.output()

    out = tmp_path / "run"
    # 1. kill -9 in the middle of a checkpoint write (the k-th save is the one after step k).
    k = int(rng.integers(3, STEPS - 3))
    first = Child([*RUN, "--steps", STEPS, "--out", out], tmp_path / "1.log", kill_in_save=k)
    assert first.wait() == -signal.SIGKILL, first.output()
    partial = [p.name for p in out.iterdir() if is_leftover(p.name)]
    assert len(partial) == 1 and partial[0].startswith(".checkpoint.pt."), sorted(os.listdir(out))
    assert (out / LOCK_NAME).exists()  # the dead holder's lock file; the kernel dropped the lock
    assert load_checkpoint(out / "checkpoint.pt")["step"] == k - 1  # the old one, intact

    # 2. kill -9 at random moments while resumed runs train (or write checkpoints, or artifacts).
    for i in range(2):
        child = Child([*RUN, "--out", out, "--resume"], tmp_path / f"r{i}.log")
        child.wait_for("resuming from step")
        assert not (out / partial[0]).exists()  # removed by the new owner before it resumed
        time.sleep(float(rng.uniform(0.0, 0.4)))
        child.kill()
        assert child.returncode in (-signal.SIGKILL, 0), child.output()

    # 3. the last --resume runs to the end.
    last = Child([*RUN, "--out", out, "--resume"], tmp_path / "last.log")
    assert last.wait() == 0, last.output()
    _same_run(load_checkpoint(out / "checkpoint.pt"), load_checkpoint(straight / "checkpoint.pt"))
    assert sorted(os.listdir(out)) == sorted(os.listdir(straight))  # no .lock, no .partial


def test_one_owner_per_run_folder(tmp_path, capsys, forkable):
    out = tmp_path / "run"
    forever = [*RUN, "--steps", 10**6, "--checkpoint-every", 5, "--out", out]
    # The second trainer starts once the first holds the folder and has said so: started
    # together, the loser could read the lock before the winner has written who it is (then it
    # says "in use by another process", also right, but not what this test checks).
    winner = Child(forever, tmp_path / "a.log")
    winner.wait_for("run folder:")
    loser = Child(forever, tmp_path / "b.log")
    end = time.monotonic() + DEADLINE_S
    while loser.poll() is None:
        assert time.monotonic() < end, winner.output() + loser.output()
        time.sleep(0.005)
    try:
        assert loser.returncode == 2, loser.output()
        error = [line for line in loser.output().splitlines() if line.strip()]
        assert len(error) == 1 and error[0].startswith("error: "), error
        holder = f"in use by pid {winner.pid} on host {socket.gethostname()}, started "
        assert holder in error[0]
        assert winner.poll() is None  # the first one trains on
        # --resume while it runs: refused before the checkpoint is read (not "does not exist").
        code, _, err = run_command(train_main, [*RUN, "--out", out, "--resume"], capsys)
        assert_one_line_error(code, err, f"pid {winner.pid}")
    finally:
        winner.kill()  # kill -9: the kernel drops the lock with the process
    stale = read_holder((out / LOCK_NAME).read_text())
    assert stale["pid"] == str(winner.pid)
    with run_lock(out, say=None):  # free at once, no waiting, no manual clean-up
        assert read_holder((out / LOCK_NAME).read_text())["pid"] == str(os.getpid())
    assert not (out / LOCK_NAME).exists()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")
def test_under_torchrun_the_lock_is_rank_0s(tmp_path, forkable):
    """Two ranks with torchrun's environment (gloo): rank 0 holds the lock, rank 1 never
    touches it; a folder in use stops rank 0 with exit status 2."""
    out = tmp_path / "run"
    argv = [*RUN, "--steps", 10**6, "--checkpoint-every", 0, "--out", out]

    def ranks(tag: str) -> list[Child]:
        port = str(_free_port())
        return [Child(argv, tmp_path / f"{tag}{rank}.log", env={
            "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}) for rank in (0, 1)]

    with run_lock(out, say=None):  # the folder is in use
        rank0, rank1 = ranks("busy")
        assert rank0.wait() == 2, rank0.output()
        assert f"in use by pid {os.getpid()} " in rank0.output()
        rank1.kill()  # it waits for rank 0 to join; torchrun would stop it the same way
    rank0, rank1 = ranks("free")
    rank0.wait_for("run folder:")
    assert read_holder((out / LOCK_NAME).read_text())["pid"] == str(rank0.pid)
    assert rank1.poll() is None and rank0.poll() is None  # both joined the group and train


def test_run_lock_releases_and_cleans(tmp_path):
    out = tmp_path / "new" / "run"
    with run_lock(out, say=None):
        assert out.is_dir()
        with pytest.raises(RunLocked, match=f"pid {os.getpid()} "), run_lock(out, say=None):
            pass
    assert not (tmp_path / "new").exists()  # created for the lock, left empty: removed
    out.mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    with run_lock(out, say=None):
        pass
    assert sorted(os.listdir(out)) == ["notes.txt"]


def test_only_the_writers_own_leftovers_are_removed(tmp_path):
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    target = tmp_path / "checkpoint.pt"
    ours_live = temp_path(target)  # this process's pid: a write in progress
    keep = [ours_live.name, ".checkpoint.pt.tmp", "checkpoint.pt.partial", "notes.partial",
            f".x.{os.getppid()}-0123abcd.partial", f".x.{dead}-0123ABCD.partial"]
    gone = [f".checkpoint.pt.{dead}-0123abcd.partial", f".samples.png.{dead}-ffffffff.partial"]
    for name in keep + gone:
        (tmp_path / name).write_bytes(b"")
    staging = tmp_path / f".data.{dead}-89abcdef.partial-folder"  # a killed conversion's folder
    (staging / "sub").mkdir(parents=True)
    (staging / "sub" / "train_x.npy").write_bytes(b"half")
    keep.append(f".y.{dead}-89abcdef.partial-folder")  # a file with a folder's name: not ours
    (tmp_path / keep[-1]).write_bytes(b"")
    removed = remove_leftovers(tmp_path)
    assert sorted(p.name for p in removed) == sorted([*gone, staging.name])
    assert sorted(os.listdir(tmp_path)) == sorted(keep)
    # a conversion's next run removes a killed one's staging folder beside its output
    (staging / "sub").mkdir(parents=True)
    save_folder(tmp_path / "data", {"train_x.npy": np.zeros((1, 1, 2, 2), np.float32)})
    assert not staging.exists()
    assert sorted(os.listdir(tmp_path / "data")) == ["train_x.npy"]


# --------------------------------------------------------------------------- untrusted headers


def _huge_npy(path: Path, shape=(10**9, 1, 8, 8)) -> None:
    from numpy.lib import format as npy_format

    with open(path, "wb") as f:
        npy_format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False,
                                              "shape": shape})
        f.write(b"\0" * 16)


def test_huge_npy_header_is_one_line_in_every_command(tmp_path, capsys):
    from runtime.data.__main__ import main as data_main

    data = write_data_folder(tmp_path / "data")
    _huge_npy(data / "train_x.npy")
    code, _, err = run_command(data_main, ["check", "--data-dir", data], capsys)
    assert_one_line_error(code, err, "train_x.npy", "(1000000000, 1, 8, 8)", "256000000000 bytes",
                          "holds 16 bytes")
    out = tmp_path / "run"
    code, _, err = run_command(train_main, [*RUN, "--steps", 2, "--dataset", "npy", "--data-dir",
                                            data, "--out", out], capsys)
    assert_one_line_error(code, err, "train_x.npy", "claims", "holds 16 bytes")
    assert not out.exists()
    _huge_npy(tmp_path / "x.npy", shape=(3, 1, 8, 8))  # claims 768 bytes, holds 16
    np.save(tmp_path / "y.npy", np.zeros(3, np.int64))
    code, _, err = run_command(data_main, ["check", "--x", tmp_path / "x.npy", "--y",
                                           tmp_path / "y.npy"], capsys)
    assert_one_line_error(code, err, "768 bytes", "truncated")


def _patch_zip_member_size(path: Path, member_suffix: bytes, size: int) -> None:
    """Make the central directory claim `size` bytes for the member ending in `member_suffix`."""
    raw = bytearray(path.read_bytes())
    at = raw.find(b"PK\x01\x02")
    while at != -1:
        n = struct.unpack_from("<H", raw, at + 28)[0]
        if bytes(raw[at + 46:at + 46 + n]).endswith(member_suffix):
            struct.pack_into("<II", raw, at + 20, size, size)  # compressed, uncompressed
        at = raw.find(b"PK\x01\x02", at + 4)
    path.write_bytes(bytes(raw))


def _checkpoint_claiming(path: Path, numel: int) -> None:
    """A torch zip checkpoint whose pickle claims a storage of `numel` bytes over a 16-byte
    record."""

    class Storage:
        pass

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.ByteStorage, "0", "cpu", numel) if isinstance(
                obj, Storage) else None

    class Tensor:
        def __reduce__(self):
            from collections import OrderedDict

            return (torch._utils._rebuild_tensor_v2,
                    (Storage(), 0, (numel,), (1,), False, OrderedDict()))

    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump({"format": "diffspec-checkpoint", "model": Tensor()})
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/data/0", b"\0" * 16)
        archive.writestr("archive/version", "3\n")


def test_checkpoint_claiming_huge_sizes_is_one_line(tmp_path, capsys):
    from runtime.sample import main as sample_main

    member = tmp_path / "member.pt"
    torch.save({"w": torch.zeros(4)}, member)
    _patch_zip_member_size(member, b"data.pkl", 0xFFFFFFF0)
    storage = tmp_path / "storage.pt"
    _checkpoint_claiming(storage, 10**12)
    cases = [(member, ("claims 4294967280 bytes", "data.pkl", "whole file holds")),
             (storage, ("corrupt", "1000000000000"))]
    for path, needles in cases:
        code, _, err = run_command(sample_main, ["--checkpoint", path, "--out",
                                                 tmp_path / "s.png"], capsys)
        assert_one_line_error(code, err, str(path), *needles)
        out = tmp_path / "run"
        out.mkdir(exist_ok=True)
        (out / "checkpoint.pt").write_bytes(path.read_bytes())
        code, _, err = run_command(train_main, [*RUN, "--out", out, "--resume"], capsys)
        assert_one_line_error(code, err, "checkpoint.pt", "corrupt")
    assert not (tmp_path / "s.png").exists()


def _pickle_calling(func, *args) -> bytes:
    class Call:
        def __reduce__(self):
            return (func, args)

    return pickle.dumps(Call(), protocol=2)


def test_cifar_members_claiming_huge_sizes(tmp_path):
    bytes8 = b"\x80\x04\x8e" + struct.pack("<Q", 10**12) + b"abc."  # a 1 TB bytes object
    from numpy._core.multiarray import _reconstruct

    array = _pickle_calling(_reconstruct, np.ndarray, (10**12,), b"b")  # a 1 TB array
    array = array.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    big = b"\0" * ((32 << 20) + 1)  # a member larger than any CIFAR-10 batch
    for i, (payload, needle) in enumerate([(bytes8, "1000000000000 bytes"),
                                           (array, "shape (1000000000000,)"),
                                           (big, "tar header claims 33554433 bytes")]):
        archive = write_fake_cifar_archive(tmp_path / f"c{i}.tar.gz",
                                           batches={"data_batch_2": payload})
        with pytest.raises(DataError, match="data_batch_2") as info:
            convert_cifar10(archive, tmp_path / f"out{i}", verify_md5=False, progress=False)
        assert needle in str(info.value)
        assert not (tmp_path / f"out{i}").exists()


def _png(path: Path, width: int, height: int, color_type: int, depth: int, rows: bytes) -> None:
    """A PNG written byte by byte (Pillow cannot write 16-bit RGB, nor lie about its size)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I",
                                                                        zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def test_image_claiming_huge_dimensions_is_skipped_and_named(tmp_path):
    from PIL import Image

    src = tmp_path / "src"
    src.mkdir()
    for name in ("a.png", "b.png"):
        Image.new("RGB", (6, 6), (10, 20, 30)).save(src / name)
    _png(src / "bomb.png", 100_000, 100_000, 0, 8, b"")  # claims 10^10 pixels in ~60 bytes
    _png(src / "wide.png", 20_000, 5_000, 0, 8, b"")  # 100 M pixels: under Pillow's error limit
    report = convert_image_folder(src, tmp_path / "out", 4, 4, 0.5, progress=False)
    assert report.skipped == ("bomb.png", "wide.png")
    bomb, wide = report.skip_reasons
    assert "100000x100000" in bomb or "10000000000 pixels" in bomb
    assert "20000x5000" in wide and "M pixels" in wide
    assert "bomb.png (" in report.summary()


# --------------------------------------------------------------------------- image bit depth


def _converted(tmp_path: Path, name: str, write) -> tuple[np.ndarray, str]:
    """Convert a folder of two copies of one image; return the 8-bit pixels and the report."""
    src = tmp_path / name
    src.mkdir()
    for copy in ("1", "2"):
        write(src / f"{copy}.{name.rsplit('-', 1)[-1]}")
    out = tmp_path / f"{name}-out"
    report = convert_image_folder(src, out, 4, 4, 0.5, progress=False)
    x = np.concatenate([np.load(out / "train_x.npy"), np.load(out / "test_x.npy")])
    return np.round(x * 255).astype(int), report.summary()


def test_16_bit_depth_comes_from_the_file_not_the_values(tmp_path):
    from PIL import Image

    def gray16(value):
        return lambda p: Image.fromarray(np.full((6, 6), value, np.uint16)).save(p)

    # near-black 16-bit (200/65535), and values all <= 255: still 16-bit, so near black
    x, log = _converted(tmp_path, "dark-png", gray16(200))
    assert (x == 1).all()  # 200 * 255/65535 = 0.78 -> 1, not 200
    assert "I;16 (PNG): 16-bit gray" in log
    x, _ = _converted(tmp_path, "white-png", gray16(65535))
    assert (x == 255).all()
    x, _ = _converted(tmp_path, "mid-tiff", gray16(32768))  # 127.50 -> 128
    assert (x == 128).all()
    # 16-bit PGM (Pillow mode I from PPM), maxval 65535
    x, log = _converted(tmp_path, "pgm-pgm", lambda p: p.write_bytes(
        b"P5 6 6 65535\n" + np.full(36, 200, ">u2").tobytes()))
    assert (x == 1).all() and "I (PPM): 16-bit gray" in log
    # 8-bit gray with the same small value stays 200
    x, log = _converted(tmp_path, "gray8-png",
                        lambda p: Image.fromarray(np.full((6, 6), 200, np.uint8)).save(p))
    assert (x == 200).all() and "L (PNG): 8-bit gray" in log
    # 16-bit RGB: Pillow keeps the high byte (0x12 of 0x1234), and the log says so
    x, log = _converted(tmp_path, "rgb16-png", lambda p: _png(
        p, 6, 6, 2, 16, (b"\0" + np.full(18, 0x1234, ">u2").tobytes()) * 6))
    assert (x == 0x12).all() and "RGB (PNG): 16-bit RGB (Pillow keeps the high byte)" in log
    # palette and alpha: named in the log
    pal = Image.new("P", (6, 6), 0)
    pal.putpalette([0, 0, 255] + [0, 0, 0] * 255)
    x, log = _converted(tmp_path, "pal-png", pal.save)
    assert (x[:, 2] == 255).all() and "P (PNG): palette" in log
    x, log = _converted(tmp_path, "alpha-png",
                        lambda p: Image.new("RGBA", (6, 6), (0, 0, 0, 0)).save(p))
    assert (x == 255).all() and "RGBA (PNG): 8-bit with transparency" in log


def test_images_of_unknown_depth_are_skipped_with_the_reason(tmp_path):
    from PIL import Image

    src = tmp_path / "src"
    src.mkdir()
    for name in ("a.png", "b.png"):
        Image.new("L", (6, 6), 7).save(src / name)
    Image.fromarray(np.full((6, 6), 3, np.int32)).save(src / "int32.tif")
    Image.fromarray(np.full((6, 6), 0.5, np.float32)).save(src / "float.tif")
    report = convert_image_folder(src, tmp_path / "out", 4, 4, 0.5, progress=False)
    reasons = dict(zip(report.skipped, report.skip_reasons, strict=True))
    assert "unknown depth" in reasons["int32.tif"]
    assert "unknown range" in reasons["float.tif"]


# --------------------------------------------------------------------------- damaged checkpoints


def _flip_a_bit_in_a_weight(path: Path) -> str:
    """Flip one bit in the middle of the largest tensor record of a torch zip checkpoint (the
    zip headers untouched); return the record's name."""
    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename),
                   key=lambda i: i.file_size)
    raw = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack_from("<HH", raw, info.header_offset + 26)
    raw[info.header_offset + 30 + name_len + extra_len + info.file_size // 2] ^= 0x10
    path.write_bytes(bytes(raw))
    return info.filename


def test_a_flipped_bit_in_a_weight_is_refused_by_every_reader(tiny_run, tmp_path,  # noqa: F811
                                                             capsys):
    from runtime.evaluate import main as evaluate_main
    from runtime.sample import main as sample_main

    out = tmp_path / "run"
    out.mkdir()
    ckpt = out / "checkpoint.pt"
    ckpt.write_bytes((tiny_run / "checkpoint.pt").read_bytes())
    member = _flip_a_bit_in_a_weight(ckpt)
    damaged = ckpt.read_bytes()
    for main, argv in [
        (sample_main, ["--checkpoint", ckpt, "--device", "cpu", "--n", 2, "--steps", 2,
                       "--out", tmp_path / "s.npy"]),
        (evaluate_main, ["--checkpoint", ckpt, "--device", "cpu", "--n", 2]),
        (train_main, ["--device", "cpu", "--no-progress", "--out", out, "--resume",
                      "--steps", 5]),
    ]:
        code, _, err = run_command(main, argv, capsys)
        assert_one_line_error(code, err, str(ckpt), member, "CRC-32")
    assert ckpt.read_bytes() == damaged  # --resume did not rewrite it with a fresh checksum
    assert sorted(os.listdir(out)) == ["checkpoint.pt"]
    assert not (tmp_path / "s.npy").exists()


# --------------------------------------------------------------------------- SIGTERM


def _sigterm_itself() -> None:
    """Send SIGTERM to this process; its handler runs before the next line (and may raise)."""
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.01)


def _sigterm_on_call(module, name: str, when: Callable[..., bool] = lambda *a: True) -> None:
    """From now on, `module.name(...)` first sends SIGTERM to this process when `when(...)`."""
    real = getattr(module, name)

    def wrapper(*args, **kwargs):
        if when(*args):
            _sigterm_itself()
        return real(*args, **kwargs)

    setattr(module, name, wrapper)


def _term_at_start_up() -> None:
    import runtime.train.loop as loop  # the folder and its lock exist, no step has run

    _sigterm_on_call(loop, "build_run")


def _term_while_writing_samples_png() -> None:
    # the moment the finished temporary file is about to be renamed over samples.png
    _sigterm_on_call(os, "replace", lambda src, dst, *rest: Path(dst).name == "samples.png")


def _term_in_the_quality_figure() -> None:
    import runtime.plumbing.quality as quality

    _sigterm_on_call(quality, "draw_and_score")


def _term_in_a_step_then_in_the_save_on_the_way_out() -> None:
    import runtime.train.loop as loop

    calls = [0]

    def third_step(*args):
        calls[0] += 1
        return calls[0] == 3

    _sigterm_on_call(loop, "train_step", third_step)
    # the first SIGTERM ends the loop after step 3; the second lands in the checkpoint write
    _sigterm_on_call(os, "replace", lambda src, dst, *rest: calls[0] >= 3
                     and Path(dst).name == "checkpoint.pt")


@pytest.mark.parametrize(("phase", "setup", "saved_step"), [
    ("start-up", _term_at_start_up, None),
    ("final pictures", _term_while_writing_samples_png, 5),
    ("quality figure", _term_in_the_quality_figure, 5),
    ("second SIGTERM in the last save", _term_in_a_step_then_in_the_save_on_the_way_out, 2),
])
def test_sigterm_in_every_phase_ends_like_ctrl_c(phase, setup, saved_step, tmp_path, forkable):
    out = tmp_path / "run"
    argv = [*RUN, "--steps", 5, "--checkpoint-every", 2, "--quality-samples", 4, "--out", out]
    child = Child(argv, tmp_path / "term.log", setup=setup)
    assert child.wait() == 130, (phase, child.output())
    assert child.output().rstrip().endswith("interrupted"), child.output()
    assert "Traceback" not in child.output()
    left = sorted(os.listdir(out)) if out.exists() else []
    assert LOCK_NAME not in left and not any(name.endswith(".partial") for name in left), left
    if saved_step is None:
        assert "checkpoint.pt" not in left
        return
    assert load_checkpoint(out / "checkpoint.pt")["step"] == saved_step
    again = Child([*RUN, "--quality-samples", 0, "--out", out, "--resume"],
                  tmp_path / "resume.log")
    assert again.wait() == 0, again.output()
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 5
    assert (out / "samples.png").exists() and LOCK_NAME not in os.listdir(out)


def test_ctrl_c_right_after_the_temporary_file_is_created_leaves_nothing(tmp_path, monkeypatch):
    from runtime.plumbing.atomic import atomic_write

    target = tmp_path / "x.bin"
    target.write_bytes(b"old")
    real_open = os.open

    def open_then_ctrl_c(*args, **kwargs):
        fd = real_open(*args, **kwargs)
        signal.raise_signal(signal.SIGINT)  # Ctrl-C lands before the caller's next line
        return fd

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        monkeypatch.setattr(os, "open", open_then_ctrl_c)
        with pytest.raises(KeyboardInterrupt):
            atomic_write(target, lambda handle: handle.write(b"new"))
    finally:
        monkeypatch.undo()
        signal.signal(signal.SIGINT, previous)
    assert sorted(os.listdir(tmp_path)) == ["x.bin"]
    assert target.read_bytes() == b"old"


# --------------------------------------------------------------------------- hostile data


class _Deadline:
    """A test that would hang fails instead: SIGALRM after `seconds` raises in the main thread."""

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds

    def __enter__(self) -> None:
        def expire(signum, frame):
            pytest.fail(f"still blocked after {self.seconds} s")

        self.previous = signal.signal(signal.SIGALRM, expire)
        signal.alarm(self.seconds)

    def __exit__(self, *exc) -> None:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, self.previous)


def test_a_named_pipe_as_data_is_refused_without_opening_it(tmp_path, capsys):
    from runtime.data.__main__ import main as data_main

    data = write_data_folder(tmp_path / "data")
    (data / "train_x.npy").unlink()
    os.mkfifo(data / "train_x.npy")
    out = tmp_path / "run"
    with _Deadline(20):
        code, _, err = run_command(data_main, ["check", "--data-dir", data], capsys)
        assert_one_line_error(code, err, "train_x.npy", "not a regular file", "named pipe")
        code, _, err = run_command(train_main, [*RUN, "--steps", 2, "--dataset", "npy",
                                                "--data-dir", data, "--out", out], capsys)
        assert_one_line_error(code, err, "train_x.npy", "not a regular file", "named pipe")
    assert not out.exists()


def test_train_refuses_splits_of_different_shapes_before_the_first_step(tmp_path, capsys):
    from runtime.data.__main__ import main as data_main

    data = write_data_folder(tmp_path / "data")
    np.save(data / "test_x.npy", np.zeros((6, 1, 6, 6), np.float32))
    code, _, check_err = run_command(data_main, ["check", "--data-dir", data], capsys)
    assert_one_line_error(code, check_err, "(1, 8, 8)", "(1, 6, 6)")
    out = tmp_path / "run"
    code, _, err = run_command(train_main, [*RUN, "--steps", 2, "--dataset", "npy",
                                            "--data-dir", data, "--out", out], capsys)
    assert_one_line_error(code, err, "train and test image sizes differ", "(1, 8, 8)",
                          "(1, 6, 6)")
    assert not out.exists()


# --------------------------------------------------------------------------- memory


def _limit_address_space() -> None:
    """In a forked child: at most 3 GiB more address space than it has now, so that a request
    that is not refused fails there instead of calling the OOM killer onto the machine."""
    import resource

    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[0])
    now = pages * os.sysconf("SC_PAGE_SIZE")
    resource.setrlimit(resource.RLIMIT_AS, (now + (3 << 30), resource.RLIM_INFINITY))


def test_requests_larger_than_memory_are_refused_with_the_estimate(tiny_run,  # noqa: F811
                                                                   tmp_path, forkable):
    from runtime.evaluate import main as evaluate_main
    from runtime.sample import main as sample_main

    ckpt = tiny_run / "checkpoint.pt"
    cases = [
        (sample_main, ["--checkpoint", ckpt, "--device", "cpu", "--n", 10**11, "--out",
                       tmp_path / "s.npy"], "--n 100000000000"),
        (evaluate_main, ["--checkpoint", ckpt, "--device", "cpu", "--n", 4, "--samples", 10**12],
         "--samples 1000000000000"),
        (train_main, [*RUN, "--steps", 2, "--T", 10**12, "--out", tmp_path / "r1"],
         "--T 1000000000000"),
        (train_main, [*RUN, "--steps", 2, "--n-samples", 10**12, "--out", tmp_path / "r2"],
         "--n-samples 1000000000000"),
        (train_main, [*RUN, "--steps", 2, "--batch-size", 10**9, "--out", tmp_path / "r3"],
         "--batch-size 1000000000"),
    ]
    for i, (main, argv, flag) in enumerate(cases):
        child = Child(argv, tmp_path / f"{i}.log", setup=_limit_address_space, main=main)
        code = child.wait()
        assert_one_line_error(code, child.output(), flag, "needs at least", "of memory",
                              "more than this machine's")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{i}.log" for i in range(5)]


def test_torch_out_of_memory_is_one_line_with_status_1(capsys):
    def main(argv):
        torch.empty(1 << 50, dtype=torch.uint8)  # 1 PiB: the allocator refuses at once

    with pytest.raises(SystemExit) as info:
        run_main(main, [])
    err = capsys.readouterr().err
    assert info.value.code == EXIT_FAILURE
    assert err.startswith("error: out of memory") and err.count("\n") == 1, err
    assert "1024.0 TiB" in err


# --------------------------------------------------------------------------- extreme values


def test_seeds_outside_64_bits_are_one_line_errors(tiny_run, tmp_path, capsys):  # noqa: F811
    from runtime.evaluate import main as evaluate_main
    from runtime.sample import main as sample_main

    ckpt = tiny_run / "checkpoint.pt"
    for seed in (2**64, -1):
        for main, argv in [
            (sample_main, ["--checkpoint", ckpt, "--device", "cpu", "--n", 1, "--steps", 1,
                           "--out", tmp_path / "s.npy"]),
            (evaluate_main, ["--checkpoint", ckpt, "--device", "cpu", "--n", 1]),
            (train_main, [*RUN, "--steps", 1, "--out", tmp_path / "run"]),
        ]:
            code, _, err = run_command(main, [*argv, "--seed", seed], capsys)
            assert_one_line_error(code, err, f"--seed must be an integer in 0..{2**64 - 1}",
                                  str(seed))
    assert sorted(os.listdir(tmp_path)) == []


def _without_progress_bars(err: str) -> str:
    """stderr less the sampler's tqdm bar (`ddim: 100%|███| 3/3 [...]`, redrawn with \\r)."""
    return "\n".join(line for line in err.splitlines()
                     if not re.match(r"^[\w+-]+: +\d+%\|", line))


def test_samples_that_are_not_finite_are_not_written(tiny_run, tiny_cond_run,  # noqa: F811
                                                     tmp_path, capsys):
    from runtime.sample import main as sample_main

    out = tmp_path / "s.npy"
    for ckpt, flags in [(tiny_run, ["--eta", "1e300"]),
                        (tiny_cond_run, ["--guidance-scale", "1e308"])]:
        argv = ["--checkpoint", ckpt / "checkpoint.pt", "--device", "cpu", "--n", 10,
                "--steps", 3, *flags, "--out", out]
        code, _, err = run_command(sample_main, argv, capsys)
        assert_one_line_error(code, _without_progress_bars(err), "not finite", "nothing written",
                              flags[0])
    assert sorted(os.listdir(tmp_path)) == []


# --------------------------------------------------------------------------- the run folder


def test_an_empty_out_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_command(train_main, [*RUN, "--steps", 1, "--out", ""], capsys)
    assert_one_line_error(code, err, "--out", "empty")
    assert os.listdir(tmp_path) == []


def test_the_resume_hint_is_a_command_the_shell_runs(tmp_path, forkable):
    import shlex

    import runtime.train.loop as loop

    out = tmp_path / "mon dossier é"
    child = Child([*RUN, "--steps", 3, "--out", out], tmp_path / "hint.log",
                  setup=lambda: _sigterm_on_call(loop, "train_step"))  # stops after step 1
    assert child.wait() == 130, child.output()
    hint = child.output().split("resume with: ", 1)[1].splitlines()[0]
    assert shlex.split(hint) == ["python", "-m", "runtime.train", "--out", str(out), "--resume"]


def test_a_full_disk_names_the_file(tiny_run, tmp_path, capsys, monkeypatch):  # noqa: F811
    from runtime.sample import main as sample_main

    real_fdopen = os.fdopen

    def onto_a_full_disk(fd, *args, **kwargs):
        os.close(fd)  # every write to /dev/full fails with ENOSPC, as on a full disk
        return real_fdopen(os.open("/dev/full", os.O_WRONLY), *args, **kwargs)

    monkeypatch.setattr(os, "fdopen", onto_a_full_disk)
    out = tmp_path / "s.npy"
    argv = ["--checkpoint", tiny_run / "checkpoint.pt", "--device", "cpu", "--n", 64,
            "--steps", 1, "--out", out]
    code, _, err = run_command(sample_main, argv, capsys)
    monkeypatch.undo()
    assert_one_line_error(code, _without_progress_bars(err), "No space left on device", str(out))
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- exit statuses


def test_memory_error_is_one_line_with_status_1(capsys):
    def main(argv):
        raise MemoryError

    with pytest.raises(SystemExit) as info:
        run_main(main, [])
    err = capsys.readouterr().err
    assert info.value.code == EXIT_FAILURE
    assert err.startswith("error: out of memory") and err.count("\n") == 1


@pytest.mark.parametrize("command", ["runtime.train", "runtime.sample", "runtime.evaluate",
                                     "runtime.data", "runtime.data cifar10",
                                     "runtime.data image-folder", "runtime.data check",
                                     "conformance"])
def test_every_help_lists_the_exit_statuses(command, capsys):
    import importlib

    module, *sub = command.split()
    main = importlib.import_module(module + ".__main__" if module in ("runtime.data",
                                                                      "conformance")
                                   else module).main
    with pytest.raises(SystemExit) as info:
        main([*sub, "--help"])
    assert info.value.code in (0, None)
    text = capsys.readouterr().out
    block = text[text.index("exit status:"):]
    for code in ("0", "1", "2", "130"):
        assert f"\n  {code} " in block, (command, code)

"""`python -m runtime.data`: convert data sets to the on-disk layout, and check data folders.

Subcommands: `cifar10`, `image-folder`, `check` (see `--help` of each). Bad input ends with one
line `error: ...` on stderr and exit status 2 (`runtime.plumbing.cli.run_main`); conversions write
atomically, so a failed or interrupted run leaves no partial output.
"""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Sequence
from pathlib import Path

from runtime.data.convert import (
    CIFAR10_MD5,
    MAX_IMAGE_PIXELS,
    convert_cifar10,
    convert_image_folder,
)
from runtime.data.datasets import (
    LAYOUT_FILES,
    SPLITS,
    DataError,
    Dataset,
    check_same_image_shape,
    describe,
    load_folder,
    load_pair,
)
from runtime.plumbing.cli import EXIT_STATUS_HELP, ArgumentParser, run_main

PROG = "python -m runtime.data"

EXAMPLES = f"""\
examples:
  {PROG} cifar10 --archive ~/Downloads/cifar-10-python.tar.gz --out data/cifar10
  {PROG} image-folder --src ~/pictures/pets --out data/pets --height 64 --width 64
  {PROG} check --data-dir data/cifar10 --dataset cifar10
  {PROG} check --x my_x.npy --y my_y.npy

then train with:  python -m runtime.train --dataset cifar10 --data-dir data/cifar10
             or:  python -m runtime.train --dataset npy --data-dir data/pets

A data folder holds {", ".join(LAYOUT_FILES)}: x (N, C, H, W) float32 in [0, 1]
(uint8 0..255 accepted on load), y (N,) int64 class labels.

{EXIT_STATUS_HELP}
"""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"got {text!r}; expected a positive integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"got {value}; expected a positive integer")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"got {text!r}; expected a number in (0, 1)") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"got {value}; expected a number in (0, 1)")
    return value


def _wrap(text: str) -> str:
    return textwrap.fill(text, width=88)


def build_parser() -> ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = ArgumentParser(
        prog=PROG,
        description="Convert data sets to NCHW .npy data folders, and check data folders.",
        epilog=EXAMPLES,
        formatter_class=fmt,
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="{cifar10,image-folder,check}"
    )

    p = sub.add_parser(
        "cifar10",
        help="convert the official CIFAR-10 python archive",
        description=_wrap(
            "Convert cifar-10-python.tar.gz (https://www.cs.toronto.edu/~kriz/cifar.html) into a "
            "data folder: train 50000 and test 10000 images, 3x32x32 float32 in [0, 1], "
            f"10 classes. The archive's published MD5 ({CIFAR10_MD5}) is checked first."
        ),
        epilog=f"example:\n  {PROG} cifar10 --archive cifar-10-python.tar.gz --out data/cifar10"
        f"\n\n{EXIT_STATUS_HELP}",
        formatter_class=fmt,
    )
    p.add_argument("--archive", required=True, type=Path, help="path to cifar-10-python.tar.gz")
    p.add_argument("--out", required=True, type=Path, help="output data folder")
    p.add_argument(
        "--no-verify-md5",
        action="store_true",
        help="skip the MD5 check (for tests with fake archives only; never for real data)",
    )

    p = sub.add_parser(
        "image-folder",
        help="convert a folder of images (class sub-folders optional)",
        description=_wrap(
            "Convert any folder of images read by Pillow into a data folder. With sub-folders, "
            "each sub-folder is a class (names sorted give ids 0, 1, ...); a flat folder is one "
            "class. Images are converted to RGB (transparency composited onto white), the short "
            "side resized and the centre cropped to HEIGHT x WIDTH. The bit depth comes from the "
            "file's format and mode, never from the pixel values: 16-bit gray is scaled by "
            "255/65535; 32-bit integer and float images (no stated range) are skipped. "
            f"Unreadable files, and images whose header claims more than "
            f"{MAX_IMAGE_PIXELS / 1e6:.1f} M pixels, are "
            "skipped and named with the reason; the summary lists what was done per mode."
        ),
        epilog=f"example:\n  {PROG} image-folder --src pets/ --out data/pets --test-fraction 0.1"
        f"\n\n{EXIT_STATUS_HELP}",
        formatter_class=fmt,
    )
    p.add_argument("--src", required=True, type=Path, help="folder of images")
    p.add_argument("--out", required=True, type=Path, help="output data folder")
    p.add_argument("--height", type=_positive_int, default=64, help="image height (default 64)")
    p.add_argument("--width", type=_positive_int, default=64, help="image width (default 64)")
    p.add_argument(
        "--test-fraction",
        type=_fraction,
        default=0.1,
        help="share of images held out (default 0.1)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the train/test split (default 0)")

    p = sub.add_parser(
        "check",
        help="validate a data folder or an X/y pair and print a summary",
        description=_wrap(
            "Validate a data folder (--data-dir) or one X/y pair (--x, --y): rank, dtype, "
            "value range, finite values, labels, matching N. Prints shapes, value range and "
            "class counts; exits 2 with one error line on the first problem."
        ),
        epilog=f"examples:\n  {PROG} check --data-dir data/cifar10 --dataset cifar10\n"
        f"  {PROG} check --x x.npy --y y.npy --num-classes 10\n\n{EXIT_STATUS_HELP}",
        formatter_class=fmt,
    )
    p.add_argument("--data-dir", type=Path, help="data folder holding " + ", ".join(LAYOUT_FILES))
    p.add_argument("--x", type=Path, help="images .npy (N, C, H, W), with --y")
    p.add_argument("--y", type=Path, help="labels .npy (N,), with --x")
    p.add_argument(
        "--dataset",
        choices=("npy", "cifar10", "image-folder"),
        default="npy",
        help="expectations for --data-dir: cifar10 requires 3x32x32 and 10 classes (default npy)",
    )
    p.add_argument("--num-classes", type=_positive_int, help="require labels in [0, K)")
    return parser


def _check(args: argparse.Namespace) -> None:
    if args.data_dir is not None:
        if args.x is not None or args.y is not None:
            raise DataError("check: got both --data-dir and --x/--y; expected one of them")
        splits: list[Dataset] = [
            load_folder(args.data_dir, split, args.dataset, args.num_classes) for split in SPLITS
        ]
        train, test = splits
        check_same_image_shape(train, test, args.data_dir)
        print(f"{args.data_dir} ({args.dataset}):")
        num_classes = max(train.num_classes, test.num_classes)
        for ds in splits:
            print(
                "  "
                + describe(Dataset(ds.name, ds.split, ds.x, ds.y, num_classes)).replace(
                    "\n", "\n  "
                )
            )
        print("ok")
        return
    if args.x is None or args.y is None:
        raise DataError("check: got no data; expected --data-dir DIR, or --x X.npy --y Y.npy")
    x, y = load_pair(args.x, args.y, args.num_classes)
    k = args.num_classes if args.num_classes is not None else int(y.max()) + 1
    print(f"{args.x}, {args.y}:")
    print("  " + describe(Dataset("npy", "pair", x, y, k)).replace("\n", "\n  "))
    print("ok")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "cifar10":
        report = convert_cifar10(args.archive, args.out, verify_md5=not args.no_verify_md5)
    elif args.command == "image-folder":
        report = convert_image_folder(
            args.src, args.out, args.height, args.width, args.test_fraction, args.seed
        )
    else:
        _check(args)
        return 0
    print(report.summary())
    return 0


if __name__ == "__main__":
    run_main(main)

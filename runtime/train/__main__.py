"""`python -m runtime.train` (see runtime/train/__init__.py)."""

from runtime.plumbing.cli import run_main
from runtime.train import main

if __name__ == "__main__":
    run_main(main)

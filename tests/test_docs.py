"""The README and the pages under docs/ stay true to the checkout: the README stays a front door
(at most 200 lines), every relative link and anchor points at something that exists, and every
command they name (`python -m <module>`, `make <target>`) exists. Text only: no torch import."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 200

FENCE = re.compile(r"^```.*?^```[ \t]*$", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)
MODULE = re.compile(r"-m ((?:runtime|conformance)(?:\.\w+)*)")
MAKE = re.compile(r"(?:^|`)make ([\w-]+)", re.M)


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def prose(text: str) -> str:
    """The text outside fenced code blocks and code spans, where links are links."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to '-', repeats '-1'..."""
    seen: dict[str, int] = {}
    out = set()
    for heading in HEADING.findall(FENCE.sub("", path.read_text(encoding="utf-8"))):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def links(path: Path) -> list[str]:
    return LINK.findall(prose(path.read_text(encoding="utf-8")))


def test_readme_is_at_most_200_lines():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= README_MAX_LINES, (
        f"README.md has {n} lines, expected at most {README_MAX_LINES}: move depth to a page under docs/"
    )


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_every_relative_link_points_at_something_that_exists(page):
    broken = []
    for target in links(page):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (page.parent / file_part).resolve() if file_part else page
        if not dest.exists():
            broken.append(f"{target}: no file {dest}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with anchor #{anchor} in {rel(dest)}")
    assert not broken, f"{rel(page)} has broken links:\n" + "\n".join(broken)


def module_exists(name: str) -> bool:
    """`python -m name` runs: name.py, or a package name/ with a __main__.py."""
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__main__.py").is_file()


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    names = {m for line in re.findall(r"^([\w .-]+):(?!=)", text, re.M) for m in line.split()}
    return {m for m in names if not m.startswith(".")}  # not .PHONY


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_every_named_command_exists(page):
    text = page.read_text(encoding="utf-8")
    missing = [f"python -m {m}" for m in sorted(set(MODULE.findall(text))) if not module_exists(m)]
    targets = make_targets()
    missing += [f"make {t}" for t in sorted(set(MAKE.findall(text))) if t not in targets]
    assert not missing, f"{rel(page)} names commands that do not exist: {missing}"


def test_the_readme_names_the_two_commands():
    text = README.read_text(encoding="utf-8")
    assert "make train" in text and "make test" in text
    assert {"train", "test"} <= make_targets()

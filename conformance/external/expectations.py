"""The expectations file: the findings a target is known to have, so that a CI job passes while
they stay exactly those and fails on any change in either direction.

A TOML file. Top-level strings pin package versions (`diffusers = "0.42.1"`: the findings are
those of that version; another installed version is reported as a difference). Then one array
of tables per verdict that is not "agrees" (`targets.VERDICTS`), each entry naming its target
and configuration family, the reason, and optionally the minimal reproduction (`case`, JSON for
`--case`):

    diffusers = "0.42.1"

    [[deviates]]
    target = "DDIMScheduler"
    family = "linspace, 1 < n < T"
    reason = "step() goes to τ − T//n, not to the grid's next timestep (DDIM Eq. 12, §4.2)"

    [[outside]]
    target = "MyUniPC"
    family = "bh2, order 2, corrector on"
    reason = "UniPC's corrector has no spec function"

`record` writes such a file from a report (reasons to be filled in by hand).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version

from conformance.external.targets import VERDICTS

FINDINGS: tuple[str, ...] = tuple(k for k in VERDICTS if k != "agrees")
"""The verdicts an expectations file records, each its own array of tables."""


class ExpectationsError(ValueError):
    """An expectations file that cannot be read; the message names the file and the fault."""


@dataclass(frozen=True)
class Expected:
    verdict: str
    reason: str
    case: str = ""


@dataclass
class Expectations:
    """The recorded findings {(target, family): Expected} and the package versions they are of."""

    entries: dict[tuple[str, str], Expected] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    path: str = ""

    def findings(self) -> dict[tuple[str, str], str]:
        """{(target, family): verdict}, comparable with `Report.findings()`."""
        return {key: e.verdict for key, e in self.entries.items()}

    def reason(self, target: str, family: str) -> str:
        e = self.entries.get((target, family))
        return e.reason if e is not None else ""


def load_expectations(path: str) -> Expectations:
    """Read an expectations file; ExpectationsError (one line) when it is not one."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ExpectationsError(f"{path}: no such expectations file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ExpectationsError(f"{path}: not valid TOML: {exc}") from None
    out = Expectations(path=path)
    for key, value in data.items():
        if isinstance(value, str):
            out.versions[key] = value
        elif key not in FINDINGS:
            raise ExpectationsError(
                f"{path}: unknown table [[{key}]]; expected [[{']], [['.join(FINDINGS)}]] or "
                "package = \"version\" strings")
        else:
            for k, e in enumerate(value):
                if not isinstance(e, dict) or not {"target", "family", "reason"} <= set(e):
                    got = sorted(e) if isinstance(e, dict) else e
                    raise ExpectationsError(f"{path}: [[{key}]] #{k + 1} needs target, family and "
                                            f"reason, got {got}")
                where = (str(e["target"]), str(e["family"]))
                if where in out.entries:
                    raise ExpectationsError(f"{path}: {where[0]} × {where[1]} is listed twice")
                out.entries[where] = Expected(key, str(e["reason"]), str(e.get("case", "")))
    return out


def installed(package: str) -> str | None:
    """The installed version of `package`, or None."""
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def compare(found: dict[tuple[str, str], str], expected: Expectations,
            only: set[tuple[str, str]] | None = None) -> list[str]:
    """Lines describing how the findings differ from the recorded ones (empty when equal).

    found: {(target, family): verdict} (`Report.findings()`); only: the (target, family) pairs
    that were run (a narrowed run compares just those; default: every recorded entry)."""
    recorded = expected.findings()
    if only is not None:
        recorded = {k: v for k, v in recorded.items() if k in only}
    lines = [f"the expectations are for {p} {v}; installed: {installed(p)}"
             for p, v in sorted(expected.versions.items()) if installed(p) != v]
    for (t, f), verdict in sorted(found.items()):
        if (t, f) not in recorded:
            lines.append(f"new finding (not in the expectations file): {t} × {f}: {verdict}")
        elif recorded[(t, f)] != verdict:
            lines.append(f"changed verdict: {t} × {f}: {verdict}, recorded {recorded[(t, f)]}")
    lines += [f"recorded finding no longer occurs: {t} × {f} ({v})"
              for (t, f), v in sorted(recorded.items()) if (t, f) not in found]
    return lines


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


def record(results: list, versions: dict[str, str] | None = None) -> str:
    """An expectations file (text) recording every finding of `results` (FamilyResults); each
    reason is the reproduction's last line (the formula, or why the claim is outside the spec),
    to be rewritten by hand into one line that says what the target does."""
    out = [f"{p} = {_quote(v)}" for p, v in sorted((versions or {}).items())]
    for r in results:
        if r.agrees:
            continue
        detail = r.repro.detail if r.repro is not None else ""
        last = detail.strip().splitlines()[-1] if detail.strip() else ""
        out += ["", f"[[{r.kind}]]", f"target = {_quote(r.target)}", f"family = {_quote(r.family)}",
                f"reason = {_quote(last)}"]
    return "\n".join(out).lstrip("\n") + "\n"

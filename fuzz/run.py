"""Run every fuzz target for a set time: ``python -m fuzz.run --seconds N``.

Each target runs in its own child process, so a crash, an abort or a memory
bomb in one is reported with its input and does not stop the others. The
engine is atheris (coverage-guided libFuzzer) when it is installed, else
Hypothesis with a large example budget. Inputs that raised anything but a
``RekorKitError`` are copied to ``fuzz/corpus/<target>/``, which the test
suite replays (``tests/fuzz``): a finding becomes a regression test.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

CORPUS = Path(__file__).with_name("corpus")
"""Findings kept as regression inputs, one folder per target."""

_EXECUTED = re.compile(r"stat::number_of_executed_units:\s*(\d+)")
_RSS_LIMIT_MB = 2048
_INPUT_TIMEOUT_S = 20
_RESTARTS = 5


def _engine(requested: str) -> str:
    if requested != "auto":
        return requested
    try:
        import atheris  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        return "hypothesis"
    return "atheris"


def write_seeds(workdir: Path) -> None:
    """Builds the seed material (a local log) and writes each target's seeds."""
    from fuzz.material import build_material
    from fuzz.targets import TARGETS

    material = build_material()
    (workdir / "keys.json").write_text(material.to_json())
    for name, target in TARGETS.items():
        seeds = workdir / name / "seeds"
        seeds.mkdir(parents=True, exist_ok=True)
        for i, seed in enumerate(target.seeds(material)):
            (seeds / f"seed-{i}").write_bytes(seed)


# -- child side ------------------------------------------------------------------


def _child_atheris(name: str, workdir: Path, seconds: int, runs: int | None) -> int:
    import atheris

    with atheris.instrument_imports(include=["rekorkit", "fuzz"]):
        from fuzz.targets import TARGETS, Keys

    target = TARGETS[name]
    keys = Keys.from_json((workdir / "keys.json").read_text())

    def one_input(data: bytes) -> None:
        target.exercise(data, keys)

    corpus = workdir / name / "corpus"
    corpus.mkdir(exist_ok=True)
    findings = workdir / name / "findings"
    findings.mkdir(exist_ok=True)
    args = [
        sys.argv[0],
        str(corpus),
        str(workdir / name / "seeds"),
        f"-max_total_time={seconds}",
        f"-rss_limit_mb={_RSS_LIMIT_MB}",
        f"-timeout={_INPUT_TIMEOUT_S}",
        f"-artifact_prefix={findings}/",
        "-max_len=65536",
        "-print_final_stats=1",
    ]
    if runs is not None:
        args.append(f"-runs={runs}")
    atheris.Setup(args, one_input)
    atheris.Fuzz()
    return 0


def _child_hypothesis(name: str, workdir: Path, seconds: int, runs: int | None) -> int:
    from hypothesis import HealthCheck, Phase, given, settings

    from fuzz.targets import TARGETS, Keys

    target = TARGETS[name]
    keys = Keys.from_json((workdir / "keys.json").read_text())
    seeds = [p.read_bytes() for p in sorted((workdir / name / "seeds").iterdir())]
    findings = workdir / name / "findings"
    findings.mkdir(exist_ok=True)
    count = 0

    @settings(
        max_examples=2000,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(mutated_inputs(seeds))
    def one_input(data: bytes) -> None:
        nonlocal count
        count += 1
        try:
            target.exercise(data, keys)
        except BaseException:
            sha = hashlib.sha1(data).hexdigest()
            (findings / f"crash-{sha}").write_bytes(data)
            raise

    end = time.monotonic() + seconds
    status = 0
    while time.monotonic() < end and (runs is None or count < runs):
        try:
            one_input()
        except Exception as exc:  # a finding: saved above; keep fuzzing
            print(f"finding: {type(exc).__name__}: {exc}"[:500], file=sys.stderr)
            status = 1
    print(f"stat::number_of_executed_units: {count}", file=sys.stderr)
    return status


def mutated_inputs(seeds: list[bytes]) -> SearchStrategy[bytes]:
    """Hypothesis strategy: seeds with a random splice, or arbitrary bytes."""
    from hypothesis import strategies

    def splice(seed: bytes, a: int, b: int, insert: bytes) -> bytes:
        i, j = sorted((a % (len(seed) + 1), b % (len(seed) + 1)))
        return seed[:i] + insert + seed[j:]

    binary = strategies.binary(max_size=512)
    if not seeds:
        return binary
    spliced = strategies.builds(
        splice,
        strategies.sampled_from(seeds),
        strategies.integers(0, 1 << 20),
        strategies.integers(0, 1 << 20),
        strategies.binary(max_size=16),
    )
    return strategies.one_of(spliced, binary)


# -- parent side -------------------------------------------------------------------


def _run_child(
    name: str, workdir: Path, seconds: int, runs: int | None, engine: str
) -> tuple[int, int | None, str]:
    cmd = [sys.executable, "-m", "fuzz.run", "--child", name, "--workdir", str(workdir)]
    cmd += ["--seconds", str(seconds), "--engine", engine]
    if runs is not None:
        cmd += ["--runs", str(runs)]
    proc = subprocess.run(
        cmd,
        cwd=Path(__file__).parents[1],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=seconds + 600,
        check=False,
    )
    executed = _EXECUTED.findall(proc.stderr)
    return proc.returncode, int(executed[-1]) if executed else None, proc.stderr


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one target's run did."""

    target: str
    engine: str
    inputs: int
    seconds: float
    exits: list[int]
    findings: list[str]
    log_tail: str

    @property
    def clean(self) -> bool:
        """No finding and no failed child."""
        return not self.findings and set(self.exits) <= {0}


def _run_target(name: str, workdir: Path, seconds: int, runs: int | None, engine: str) -> Outcome:
    """Fuzzes one target for ``seconds``; after a finding the child is restarted
    (its working corpus kept) until the time is used, at most ``_RESTARTS`` times."""
    started = time.monotonic()
    total = 0
    exits: list[int] = []
    tails: list[str] = []
    while len(exits) <= _RESTARTS:
        left = int(seconds - (time.monotonic() - started))
        if left < 1 or (runs is not None and total >= runs):
            break
        code, executed, stderr = _run_child(
            name, workdir, left, None if runs is None else runs - total, engine
        )
        exits.append(code)
        # A child that crashed hard (abort, signal, memory limit) prints no stats.
        total += executed or 0
        if code != 0:
            tails.append(stderr[-3000:])
    elapsed = time.monotonic() - started
    from fuzz.targets import VECTOR_SEEDED

    kept = []
    findings = workdir / name / "findings"
    for found in sorted(findings.iterdir()) if findings.is_dir() else []:
        if name in VECTOR_SEEDED:  # mutated vector files stay out of the repository
            kept.append(str(found))
            continue
        data = found.read_bytes()
        dest = CORPUS / name / f"{found.name.split('-')[0]}-{hashlib.sha1(data).hexdigest()[:16]}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        kept.append(str(dest.relative_to(CORPUS.parent)))
    return Outcome(name, engine, total, round(elapsed, 1), exits, kept, "\n".join(tails))


def main(argv: list[str] | None = None) -> int:
    """Entry point; see the module docstring."""
    p = argparse.ArgumentParser(prog="python -m fuzz.run", description=__doc__)
    p.add_argument("--seconds", type=int, default=60, help="time per target (default 60)")
    p.add_argument("--runs", type=int, default=None, help="stop a target after this many inputs")
    p.add_argument("--targets", default="", help="comma-separated target names (default: all)")
    p.add_argument("--engine", choices=("auto", "atheris", "hypothesis"), default="auto")
    p.add_argument("--workdir", type=Path, default=None, help="seeds and working corpora")
    p.add_argument("--report", type=Path, default=None, help="write the summary as JSON here")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    engine = _engine(args.engine)
    if args.child is not None:
        child = _child_atheris if engine == "atheris" else _child_hypothesis
        return child(args.child, args.workdir, args.seconds, args.runs)

    from fuzz.targets import TARGETS

    names = [n for n in args.targets.split(",") if n] or list(TARGETS)
    unknown = sorted(set(names) - set(TARGETS))
    if unknown:
        p.error(f"unknown targets {unknown}; known: {', '.join(TARGETS)}")
    own_workdir = args.workdir is None
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="rekorkit-fuzz-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        if not (workdir / "keys.json").exists():
            write_seeds(workdir)
        results = []
        for name in names:
            r = _run_target(name, workdir, args.seconds, args.runs, engine)
            results.append(r)
            rate = round(r.inputs / r.seconds) if r.seconds else 0
            print(
                f"{name:22} {engine:10} inputs={r.inputs} in {r.seconds}s ({rate}/s) "
                f"{'ok' if r.clean else 'FINDING'} {' '.join(r.findings)}",
                flush=True,
            )
            if r.log_tail:
                print(r.log_tail, file=sys.stderr)
        if args.report is not None:
            args.report.write_text(json.dumps([asdict(r) for r in results], indent=1))
        return 0 if all(r.clean for r in results) else 1
    finally:
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())

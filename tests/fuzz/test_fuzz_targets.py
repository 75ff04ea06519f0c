"""A short fuzz run of every target, and the kept findings replayed as regressions.

``make fuzz`` runs the same targets for minutes each (``python -m fuzz.run``);
here each gets a few hundred Hypothesis inputs, mutated from its seeds.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from rekorkit.errors import RekorKitError

# The fuzz targets live beside the package, in the project's fuzz/ folder.
PROJECT_ROOT = Path(__file__).resolve().parents[2]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from fuzz.material import Material, build_material  # noqa: E402
from fuzz.run import CORPUS, mutated_inputs  # noqa: E402
from fuzz.targets import TARGETS, VECTOR_SEEDED, Keys  # noqa: E402

# Findings in modules outside the core, reported and awaiting their fix: the
# replay is a strict xfail, so it turns into a failure the day it passes.
OPEN_FINDINGS: dict[str, str] = {}


@pytest.fixture(scope="module")
def material() -> Material:
    """Seeds from a local log with a few hundred entries (and vectors, when present)."""
    return build_material()


@pytest.fixture(scope="module")
def keys(material: Material) -> Keys:
    """The keys the seed log signs with."""
    return Keys.from_json(material.to_json())


def _corpus() -> list[Path]:
    return sorted(p for p in CORPUS.glob("*/*") if p.is_file())


def test_every_target_has_seeds(material: Material) -> None:
    for name, target in TARGETS.items():
        if name not in VECTOR_SEEDED:
            assert target.seeds(material), name


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_seeds_only_raise_rekorkit_errors(name: str, material: Material, keys: Keys) -> None:
    for seed in TARGETS[name].seeds(material):
        TARGETS[name].exercise(seed, keys)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_short_fuzz_run(name: str, material: Material, keys: Keys) -> None:
    target = TARGETS[name]
    seeds = target.seeds(material)

    @settings(
        max_examples=150,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(mutated_inputs(seeds))
    def run(data: bytes) -> None:
        target.exercise(data, keys)

    run()


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(
            p,
            id=f"{p.parent.name}/{p.name}",
            marks=[pytest.mark.xfail(strict=True, reason=OPEN_FINDINGS[key])]
            if (key := f"{p.parent.name}/{p.name}") in OPEN_FINDINGS
            else [],
        )
        for p in _corpus()
    ],
)
def test_kept_findings_only_raise_rekorkit_errors(path: Path, keys: Keys) -> None:
    TARGETS[path.parent.name].exercise(path.read_bytes(), keys)


def test_corpus_folders_name_targets() -> None:
    assert {p.parent.name for p in _corpus()} <= set(TARGETS)


@pytest.mark.parametrize("engine", ["hypothesis", "atheris"])
def test_runner_counts_inputs(engine: str, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "fuzz.run", "--engine", engine, "--seconds", "2"),
            *("--targets", "tile_path", "--workdir", str(tmp_path), "--report", str(report)),
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "tile_path" in proc.stdout and " ok" in proc.stdout
    assert '"inputs": 0' not in report.read_text()


def test_exercise_lets_other_errors_through(keys: Keys) -> None:
    # The contract the targets check: RekorKitErrors are swallowed, others are not.
    TARGETS["tile_path"].exercise(b"not/a/tile", keys)
    with pytest.raises(RekorKitError):
        TARGETS["tile_path"].run(b"not/a/tile", keys)
    # A path that parses but does not format back would be a finding.
    TARGETS["tile_path"].exercise(b"tile/0/x001/234.p/5", keys)

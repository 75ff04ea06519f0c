"""Rewrite the README benchmark table from a pytest-benchmark JSON file.

Usage: ``python benches/report.py .bench.json [more.json ...] README.md``

Several JSON files merge in order, a later run of the same case replacing an
earlier one (to refresh one module's figures without rerunning every bench).

Only the text between ``<!-- bench:start -->`` and ``<!-- bench:end -->`` is
replaced (the markers and a "Benchmarks" heading are appended when missing).
Each row shows the median, the per-item rate (and bytes/s where a case hashes
bytes), the pure-Python baseline it is paired with and the ratio of rates.
A case names its baseline case in ``extra_info["baseline"]``; cases that time
their baseline inside one test record ``ratio`` (and ``baseline_per_s``)
themselves, with a description as ``baseline``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

START = "<!-- bench:start -->"
END = "<!-- bench:end -->"


def _si(value: float, unit: str = "") -> str:
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}".rstrip()


def _duration(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.3g} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} µs"


def _rate(bench: dict[str, Any]) -> float | None:
    ops = bench.get("extra_info", {}).get("ops")
    median = bench["stats"]["median"]
    return ops / median if ops and median > 0 else None


def rows(data: dict[str, Any]) -> list[list[str]]:
    """Table rows, grouped, in the order the cases ran."""
    benches: list[dict[str, Any]] = data.get("benchmarks", [])
    by_name = {b["name"]: b for b in benches}
    order: list[str] = []
    for b in benches:
        group = b.get("group") or b.get("fullname", b["name"]).split("::")[0]
        if group not in order:
            order.append(group)
    out: list[list[str]] = []
    for group in order:
        members = [
            b
            for b in benches
            if (b.get("group") or b.get("fullname", b["name"]).split("::")[0]) == group
        ]
        for b in members:
            info = b.get("extra_info", {})
            median = b["stats"]["median"]
            rate = _rate(b)
            throughput = _si(rate, "/s") if rate else "—"
            if rate and info.get("bytes"):
                throughput += f" ({_si(info['bytes'] / median, 'B/s')})"
            if info.get("cpu_per_s"):
                throughput += f"; {_si(info['cpu_per_s'], '/s')} per CPU-second"
            base_name = info.get("baseline")
            ratio = info.get("ratio")
            if info.get("role") == "baseline":
                baseline, ratio_text = "(this is the baseline)", "1x"
            elif base_name is None:
                baseline, ratio_text = "—", "—"
            else:
                paired = by_name.get(base_name)
                base_rate = _rate(paired) if paired else info.get("baseline_per_s")
                if rate and base_rate:
                    ratio = rate / base_rate
                label = f"`{base_name}`" if paired else str(base_name)
                baseline = f"{label} {_si(base_rate, '/s')}" if base_rate else label
                ratio_text = f"{ratio:.3g}x" if ratio else "—"
            note = info.get("note", "")
            out.append(
                [group, f"`{b['name']}`", _duration(median), throughput, baseline, ratio_text, note]
            )
    return out


def table(data: dict[str, Any]) -> str:
    machine = data.get("machine_info", {})
    cpu = machine.get("cpu", {}).get("brand_raw") or machine.get("processor", "unknown CPU")
    cores = machine.get("cpu", {}).get("count", "?")
    when = data.get("datetime", "")[:16].replace("T", " ")
    head = ["group", "case", "median", "rate", "pure-Python baseline", "ratio", "note"]
    lines = [
        f"Measured by `make bench` on {cpu}, {cores} cores, {when} UTC. Rates are items per "
        "second (nodes, leaves, proofs); the ratio compares per-item rates with the paired "
        "pure-Python case from the same run.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
    ]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in r) + " |" for r in rows(data)]
    return "\n".join(lines)


def rewrite(readme: str, body: str) -> str:
    """``readme`` with the marked section replaced by ``body``."""
    block = f"{START}\n{body}\n{END}"
    if START in readme and END in readme and readme.index(START) < readme.index(END):
        before = readme[: readme.index(START)]
        after = readme[readme.index(END) + len(END) :]
        return before + block + after
    return readme.rstrip("\n") + "\n\n## Benchmarks\n\n" + block + "\n"


def merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One run from several: later cases replace earlier ones with the same full name."""
    merged = dict(runs[-1])
    cases: dict[str, dict[str, Any]] = {}
    for run in runs:
        for b in run.get("benchmarks", []):
            cases[b.get("fullname", b["name"])] = b
    merged["benchmarks"] = list(cases.values())
    return merged


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print("usage: report.py BENCH_JSON [BENCH_JSON ...] README", file=sys.stderr)
        return 2
    data = merge([json.loads(Path(p).read_text()) for p in argv[1:-1]])
    readme = Path(argv[-1])
    readme.write_text(rewrite(readme.read_text(), table(data)))
    print(f"wrote {len(data.get('benchmarks', []))} benchmark rows into {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

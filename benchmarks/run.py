"""Run the benchmarks: `python -m benchmarks.run [name ...] [--json PATH]`.

Prints `name: value unit (ratio x vs anchor)` per figure and writes them as JSON
(default benchmarks/results/latest.json).
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import platform
import sys
import time
from pathlib import Path

import benchmarks
from benchmarks.harness import Figure, bench_server


def available() -> list[str]:
    return sorted(
        m.name.removeprefix("bench_")
        for m in pkgutil.iter_modules(benchmarks.__path__)
        if m.name.startswith("bench_")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "names", nargs="*", help=f"benchmarks to run (default all: {', '.join(available())})"
    )
    parser.add_argument(
        "--json", type=Path, default=Path(__file__).parent / "results" / "latest.json"
    )
    args = parser.parse_args(argv)
    names = args.names or available()
    unknown = set(names) - set(available())
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")

    figures: list[Figure] = []
    with bench_server() as bench:
        for name in names:
            module = importlib.import_module(f"benchmarks.bench_{name}")
            print(f"# {name}", flush=True)
            for figure in module.run(bench):
                figures.append(figure)
                print(figure.line(), flush=True)

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "machine": {
                    "python": sys.version.split()[0],
                    "platform": platform.platform(),
                    "cpus": __import__("os").cpu_count(),
                },
                "figures": [f.as_dict() for f in figures],
            },
            indent=2,
            default=str,
        )
    )
    print(f"# wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

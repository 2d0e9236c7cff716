"""How long `suggest` takes on a 2,000-image pool with the default model (packaged Lite0, 224 px).

The pool: the first 2,000 ELPV cells (files on disk, 300 x 300 grayscale PNGs), as a manifest; a cold
start (no run, typiclust: the costliest selection here, it clusters the whole pool). Three calls in one
process, starting from an empty cache folder:

1. nothing cached: check, decode, features, selection;
2. the pool decoded (the feature cache emptied): the figure the target is about;
3. everything cached (another budget or method on the same pool).

    python benchmarks/suggest_time.py
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from default_fit import RESULTS, _cpu, _source_state, write_csv

POOL_SIZE = 2000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool-size", type=int, default=POOL_SIZE)
    args = parser.parse_args()
    cache = Path(tempfile.mkdtemp(prefix="transferkit-suggest-time-"))
    os.environ["TRANSFERKIT_CACHE"] = str(cache)  # before transferkit reads it
    from transferkit.active import suggest
    from transferkit.data.resolve import resolve_data

    paths = [record.path for record in resolve_data("elpv").records][: args.pool_size]
    manifest = cache / "pool.csv"
    with open(manifest, "w", newline="") as handle:
        csv.writer(handle).writerows([["path"], *([path] for path in paths)])
    rows = []
    for state in ("nothing cached", "pool decoded", "everything cached"):
        if state == "pool decoded":
            shutil.rmtree(cache / "features", ignore_errors=True)
        started = time.perf_counter()
        result = suggest(pool=manifest, budget=20, out=cache / "to_label.csv")
        rows.append({"state": state, "seconds": time.perf_counter() - started, "picks": len(result.picks)})
        print(rows[-1], flush=True)
    shutil.rmtree(cache, ignore_errors=True)
    command = " ".join(["python benchmarks/suggest_time.py", *sys.argv[1:]])
    write_csv("suggest_time", rows)
    lines = [
        f"# suggest on a {len(paths)}-image pool (cold start, typiclust, packaged Lite0 at 224 px)",
        "",
        f"Command: `{command}` at commit {_source_state()}; {_cpu()}.",
        "",
        "| cache | seconds |",
        "| --- | ---: |",
        *(f"| {row['state']} | {row['seconds']:.1f} |" for row in rows),
    ]
    (RESULTS / "suggest_time.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

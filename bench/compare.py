"""Benchmark: the default `python analysis.py`, in both precisions, against the classic Keras MNIST CNN.

    python bench/compare.py                 # seeds 1 2 3: classic, auto, float32; about an hour on 2 cores
    python bench/compare.py --skip-classic  # analysis.py alone
    python bench/compare.py --analysis-args="--epochs 9"  # a candidate setting against the classic

Each run is a whole process, timed from start to exit, one after another (never two at once),
the recipes alternating within each seed so that drift on a shared machine hits them alike. Prints
test accuracy per seed, medians, wall times and their ratio to the classic's, peak resident memory,
and the time of CI's smoke run (`--dry-run`). `--precision auto` resolves to float32 on a CPU without bfloat16; the
float32 runs are then skipped as duplicates. A benchmark, not a test: CI does not run it.
"""

import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ["--dry-run"]  # as CI runs it (until 2026-11-27: --epochs 1 --train-samples 2000 --test-samples 500)


def timed_run(command):
    """Run a command to completion; return (wall seconds, its own peak RSS in MiB, stdout)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(process.pid, 0)  # this child's rusage alone, unlike getrusage
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must be told
        out.seek(0)
        err.seek(0)
        if process.returncode:
            sys.exit(f"{' '.join(command)} failed:\n{err.read()[-2000:]}")
        return wall, usage.ru_maxrss / 1024, out.read()


def accuracy_of(stdout):
    """The test accuracy printed as `Accuracy:  0.9959`."""
    return float(re.search(r"^Accuracy:\s+([0-9.]+)", stdout, re.MULTILINE).group(1))


def main(argv=None):
    """Run the comparison and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--skip-classic", action="store_true", help="time analysis.py alone")
    parser.add_argument("--smoke-repeats", type=int, default=3)
    parser.add_argument("--log-dir", type=Path, help="keep each run's output here")
    parser.add_argument("--analysis-args", default="", metavar="FLAGS",
                        help="more flags for analysis.py's runs, such as '--epochs 9': a candidate against the classic")
    args = parser.parse_args(argv)
    python = sys.executable
    candidate = shlex.split(args.analysis_args)
    recipes = {"auto": [python, "analysis.py", *candidate, "--precision", "auto"],
               "float32": [python, "analysis.py", *candidate, "--precision", "float32"]}
    if not args.skip_classic:
        recipes = {"classic": [python, "bench/classic.py"], **recipes}

    if args.log_dir:
        args.log_dir.mkdir(parents=True, exist_ok=True)
    results = {name: [] for name in recipes}
    for seed in args.seeds:
        for name, command in recipes.items():
            if name == "float32" and results["auto"] and results["auto"][-1][3] == "float32":
                continue  # auto already ran in float32 on this CPU
            wall, peak, stdout = timed_run([*command, "--seed", str(seed)])
            if args.log_dir:
                (args.log_dir / f"{name}-seed{seed}.txt").write_text(stdout)
            precision = re.search(r"^Device: .*?, (\S+) precision", stdout, re.MULTILINE)
            precision = precision.group(1) if precision else "float32"
            results[name].append((accuracy_of(stdout), wall, peak, precision))
            print(f"{name:8s} seed {seed}: accuracy {accuracy_of(stdout):.4f}  wall {wall:6.1f} s  "
                  f"peak RSS {peak:5.0f} MiB  ({precision})", flush=True)
    smoke = [timed_run([python, "analysis.py", *SMOKE])[0] for _ in range(args.smoke_repeats)]

    print("\n| recipe | precision | accuracy by seed | median accuracy | median wall | ratio to classic | max peak RSS |")
    print("|---|---|---|---|---|---|---|")
    classic = statistics.median(row[1] for row in results["classic"]) if "classic" in results else None
    for name, rows in results.items():
        if not rows:
            continue
        accuracies, walls, peaks, precisions = zip(*rows)
        wall = statistics.median(walls)
        ratio = f"{wall / classic:.2f}" if classic else "-"
        print(f"| {name} | {precisions[0]} | {' / '.join(f'{100 * a:.2f}' for a in accuracies)} % "
              f"| {100 * statistics.median(accuracies):.2f} % | {wall:.0f} s | {ratio} | {max(peaks):.0f} MiB |")
    print(f"\nsmoke run ({' '.join(SMOKE)}): median {statistics.median(smoke):.1f} s of {len(smoke)}")


if __name__ == "__main__":
    main()

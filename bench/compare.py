"""Benchmark: the default `python analysis.py` against the classic Keras MNIST CNN, side by side.

    python bench/compare.py                 # seeds 1 2 3, both recipes, about 40 minutes on 2 cores
    python bench/compare.py --skip-classic  # the default run alone

Each run is a whole process, timed from start to exit, one after another (never two at once),
classic and default alternating so that drift on a shared machine hits both alike. Prints test
accuracy per seed, medians, wall times, their ratio, peak resident memory, and the smoke run's time.
A benchmark, not a test: CI does not run it.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ["--epochs", "1", "--train-samples", "2000", "--test-samples", "500"]


def timed_run(command):
    """Run a command to completion; return (wall seconds, its own peak RSS in MB, stdout)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(process.pid, 0)  # this child's rusage alone, unlike getrusage
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        if os.waitstatus_to_exitcode(status):
            sys.exit(f"{' '.join(command)} failed:\n{err.read()[-2000:]}")
        return wall, usage.ru_maxrss / 1024, out.read()


def accuracy_of(stdout):
    """The test accuracy printed as `Accuracy:  0.9959`."""
    return float(re.search(r"^Accuracy:\s+([0-9.]+)", stdout, re.MULTILINE).group(1))


def main(argv=None):
    """Run the comparison and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--skip-classic", action="store_true", help="time the default run alone")
    parser.add_argument("--smoke-repeats", type=int, default=3)
    parser.add_argument("--log-dir", type=Path, help="keep each run's output here")
    args = parser.parse_args(argv)
    python = sys.executable
    recipes = {"default": [python, "analysis.py"]}
    if not args.skip_classic:
        recipes = {"classic": [python, "bench/classic.py"], **recipes}

    if args.log_dir:
        args.log_dir.mkdir(parents=True, exist_ok=True)
    results = {name: [] for name in recipes}
    for seed in args.seeds:
        for name, command in recipes.items():
            wall, peak, stdout = timed_run([*command, "--seed", str(seed)])
            if args.log_dir:
                (args.log_dir / f"{name}-seed{seed}.txt").write_text(stdout)
            accuracy = accuracy_of(stdout)
            results[name].append((accuracy, wall, peak))
            print(f"{name:8s} seed {seed}: accuracy {accuracy:.4f}  wall {wall:6.1f} s  "
                  f"peak RSS {peak:5.0f} MB", flush=True)
    smoke = [timed_run([python, "analysis.py", *SMOKE])[0] for _ in range(args.smoke_repeats)]

    print("\n| recipe | accuracy by seed | median accuracy | median wall | max peak RSS |")
    print("|---|---|---|---|---|")
    medians = {}
    for name, rows in results.items():
        accuracies, walls, peaks = zip(*rows)
        medians[name] = statistics.median(walls)
        print(f"| {name} | {' / '.join(f'{100 * a:.2f}' for a in accuracies)} % "
              f"| {100 * statistics.median(accuracies):.2f} % | {medians[name]:.0f} s | {max(peaks):.0f} MB |")
    if "classic" in medians:
        print(f"\nwall-time ratio default / classic (medians): {medians['default'] / medians['classic']:.2f}")
    print(f"smoke run ({' '.join(SMOKE)}): median {statistics.median(smoke):.1f} s of {len(smoke)}")


if __name__ == "__main__":
    main()

"""The demo's whole command against ``python -c "import torch"`` on the same machine (issue 15,
item 1: ``cnnzoo train lenet5`` in at most about 3x the import, with a mean test accuracy of at
least 97% over seeds 0, 1, 2 and none below 96.5%).

Each round runs, one after the other so that load from other processes hits them alike: the
import of torch alone, then ``python -m cnnzoo train lenet5 -q`` from this checkout, then the same
command from every ``--against`` git revision (checked out into a temporary worktree and put first
on ``PYTHONPATH``). Every command is a fresh interpreter with this one's executable, writing to a
new temporary run folder. Ratios are taken within a round; the table gives the median and the
range. The fit time and test accuracy come from the run's own "done:" line. With ``--seeds``, the
accuracy check then trains this checkout's demo once per seed.

    .venv/bin/python benchmarks/bench_demo.py [--rounds 5] [--against REV ...] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_RATIO = 3.0
TARGET_MEAN, TARGET_MIN = 97.0, 96.5
DONE = re.compile(r"done: test accuracy ([\d.]+)% .*?, ([\d.]+)s; files in")


@dataclass
class Contender:
    name: str
    src: Path | None  # None: the import of torch alone
    walls: list[float] = field(default_factory=list)
    fits: list[float] = field(default_factory=list)
    accuracies: list[float] = field(default_factory=list)


def _env(src: Path) -> dict[str, str]:
    # no empty entry when PYTHONPATH is unset: that would put the working directory on sys.path
    paths = [str(src), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def _check_source(src: Path) -> None:
    # PYTHONPATH must win over the installed (editable) cnnzoo, or every contender is this one.
    found = subprocess.run(
        [sys.executable, "-c", "import cnnzoo, sys; sys.stdout.write(cnnzoo.__file__)"],
        env=_env(src),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if not Path(found).resolve().is_relative_to(src.resolve()):
        raise SystemExit(f"cnnzoo imports from {found}, not from {src}: cannot time that tree")


def _train(src: Path, seed: int | None = None) -> tuple[float, float, float]:
    """Wall seconds of the whole command, and the fit time and accuracy its "done:" line gives."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "cnnzoo", "train", "lenet5", "-q", "--out", f"{tmp}/run"]
        if seed is not None:
            command += ["--seed", str(seed)]
        start = time.perf_counter()
        done = subprocess.run(command, env=_env(src), cwd=tmp, capture_output=True, text=True)
        wall = time.perf_counter() - start
    said = done.stdout + done.stderr
    match = DONE.search(said)
    if done.returncode != 0 or match is None:
        raise SystemExit(f"the demo failed (exit {done.returncode}):\n{said[-2000:]}")
    return wall, float(match[2]), float(match[1])


def _import_torch() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    return time.perf_counter() - start


@contextmanager
def _worktrees(revisions: Sequence[str]) -> Iterator[list[Contender]]:
    with tempfile.TemporaryDirectory() as tmp:
        trees = []
        try:
            for revision in revisions:
                path = Path(tmp) / re.sub(r"[^\w.-]", "_", revision)
                subprocess.run(
                    [
                        "git",
                        "-C",
                        str(ROOT),
                        "worktree",
                        "add",
                        "--detach",
                        "-q",
                        str(path),
                        revision,
                    ],
                    check=True,
                )
                trees.append(Contender(f"at {revision}", path / "src"))
            yield trees
        finally:
            for tree in trees:
                assert tree.src is not None
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree.src.parent)],
                    check=False,
                )


def _spread(values: Sequence[float], unit: str = "") -> str:
    return f"{statistics.median(values):.2f}{unit} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--against", nargs="*", default=[], metavar="REV", help="git revisions")
    parser.add_argument("--seeds", type=int, nargs="*", default=[], help="accuracy check")
    args = parser.parse_args()

    load = os.getloadavg()[0]
    print(f"{sys.executable}; {os.cpu_count()} CPUs, load average {load:.1f} at start")
    torch_alone = Contender("python -c 'import torch'", None)
    this = Contender("python -m cnnzoo train lenet5 -q (this checkout)", ROOT / "src")
    with _worktrees(args.against) as others:
        contenders = [this, *others]
        for contender in contenders:
            assert contender.src is not None
            _check_source(contender.src)
        for _ in range(args.rounds):
            torch_alone.walls.append(_import_torch())
            for contender in contenders:
                assert contender.src is not None
                wall, fit, accuracy = _train(contender.src)
                contender.walls.append(wall)
                contender.fits.append(fit)
                contender.accuracies.append(accuracy)

    print(f"\n{args.rounds} interleaved rounds; seed 0; median (range)")
    print(f"{'':52s} {'wall s':>18s} {'x import torch':>18s} {'fit s':>18s}  accuracy")
    print(f"{torch_alone.name:52s} {_spread(torch_alone.walls):>18s} {'1.00':>18s}")
    for contender in contenders:
        ratios = [w / t for w, t in zip(contender.walls, torch_alone.walls, strict=True)]
        reached = ", ".join(f"{a:.2f}%" for a in sorted(set(contender.accuracies)))
        print(
            f"{contender.name:52s} {_spread(contender.walls):>18s} {_spread(ratios, 'x'):>18s} "
            f"{_spread(contender.fits):>18s}  {reached}"
        )
    ratio = statistics.median(w / t for w, t in zip(this.walls, torch_alone.walls, strict=True))
    verdict = "met" if ratio <= TARGET_RATIO else f"not under {TARGET_RATIO:.0f}x"
    print(f"this checkout: {ratio:.2f}x the import of torch (target: at most about 3x): {verdict}")
    for other in others:
        speedup = statistics.median(o / t for o, t in zip(other.walls, this.walls, strict=True))
        print(f"  {other.name} took {speedup:.2f}x this checkout's time (median per round)")

    if args.seeds:
        assert this.src is not None
        accuracies = [_train(this.src, seed)[2] for seed in args.seeds]
        mean = statistics.mean(accuracies)
        met = mean >= TARGET_MEAN and min(accuracies) >= TARGET_MIN
        listed = ", ".join(
            f"seed {s}: {a:.2f}%" for s, a in zip(args.seeds, accuracies, strict=True)
        )
        print(
            f"\naccuracy: {listed}; mean {mean:.2f}% (target: mean >= {TARGET_MEAN}%, none below "
            f"{TARGET_MIN}%): {'met' if met else 'NOT met'}"
        )
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()

"""Time and peak memory of ``cnnzoo.summary`` against torchinfo and against a real forward pass.

    .venv/bin/python benchmarks/bench_summary.py [--quick]

Three ways to get a model's layer table (or at least its shapes), each measured cold (the first
call in a fresh process, imports already done, so first-use costs such as lazily imported
modules count) and warm (the second call in the same process):

- ``cnnzoo``: ``summary(name, input)``: builds the model on the meta device and traces it;
- ``torchinfo``: builds the real model, then ``torchinfo.summary`` runs a real forward pass;
- ``forward``: builds the real model and runs one forward pass (no_grad), nothing else.

Every measurement runs in its own subprocess so peak memory is that call's alone: the peak RSS
counter is reset before the call (Linux ``/proc/self/clear_refs``) and the growth over the RSS
before the call is reported. Ratios compare numbers from this same run.

Targets (issue 4): at 8x3x1024x1024 at most 1/20 of torchinfo's time and 1/10 of its memory
growth; at 224 no slower than torchinfo including building the model; the first call's extra
cost small.

    .venv/bin/python benchmarks/bench_summary.py --depth

Issue 11: the cost of a table grows linearly with depth. ``--depth`` times the table
(``summary`` + ``to_text``) and the model page (``draw.model_page``) of resnet110 (54 blocks)
and resnet1202 (600 blocks, the same block 11x as often), best of three in one process, and
prints seconds per block and the ratio (target: at most ~1.5x per block).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CASES = [
    ("resnet50", (1, 3, 224, 224)),
    ("resnet152", (1, 3, 224, 224)),
    ("vgg16", (1, 3, 224, 224)),
    ("resnet50", (8, 3, 1024, 1024)),
]
METHODS = ("cnnzoo", "torchinfo", "forward")


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _measure(call: Any) -> dict[str, float]:
    """Seconds and peak-RSS growth (MB) of one call."""
    import gc

    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS
    before = _rss_kb("VmRSS")
    start = time.perf_counter()
    call()
    seconds = time.perf_counter() - start
    peak = _rss_kb("VmHWM")
    return {"seconds": seconds, "peak_growth_mb": (peak - before) / 1024}


def one(method: str, name: str, shape: tuple[int, ...]) -> dict[str, Any]:
    """Runs in the child process: imports, then a cold and a warm call."""
    start = time.perf_counter()
    import torch

    import cnnzoo

    if method == "torchinfo":
        import torchinfo
    imports = time.perf_counter() - start
    torch.set_num_threads(torch.get_num_threads())
    batch, *size = shape

    def run() -> None:
        if method == "cnnzoo":
            cnnzoo.summary(name, tuple(size), batch_size=batch)
        elif method == "torchinfo":
            model = cnnzoo.create_model(name)
            torchinfo.summary(model, input_size=shape, verbose=0, device="cpu")
        else:
            model = cnnzoo.create_model(name).eval()
            with torch.no_grad():
                model(torch.randn(shape))

    cold = _measure(run)
    warm = _measure(run)
    return {
        "imports_s": imports,
        "cold": cold,
        "warm": warm,
        "dynamo_imported": "torch._dynamo" in sys.modules,
    }


def _child(method: str, name: str, shape: tuple[int, ...]) -> dict[str, Any]:
    command = [sys.executable, __file__, "--one", method, name, *map(str, shape)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        raise RuntimeError(f"{method} {name} {shape} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# (model, residual blocks): 3 stages of n blocks, n = (depth - 2) / 6 (He et al. 2015, sec. 4.2)
DEPTH_CASES = (("resnet110", 54), ("resnet1202", 600))


def depth_scaling(repeats: int = 3) -> None:
    """Seconds per residual block of the table and of the model page, shallow vs deep."""
    import cnnzoo
    from cnnzoo.draw import model_page

    cnnzoo.summary("resnet20").to_text()  # imports and first-use costs out of the way
    per_block: dict[str, dict[str, float]] = {}
    for name, blocks in DEPTH_CASES:
        table_s = page_s = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            table = cnnzoo.summary(name)
            table.to_text()
            table_s = min(table_s, time.perf_counter() - start)
            start = time.perf_counter()
            model_page(table)
            page_s = min(page_s, time.perf_counter() - start)
        per_block[name] = {"table": table_s / blocks, "page": page_s / blocks}
        print(
            f"{name:11} {blocks:4} blocks  table {table_s:7.3f} s ({1e3 * table_s / blocks:.2f} "
            f"ms/block)  page {page_s:7.3f} s ({1e3 * page_s / blocks:.2f} ms/block)"
        )
    (shallow, _), (deep, _) = DEPTH_CASES
    for what in ("table", "page"):
        ratio = per_block[deep][what] / per_block[shallow][what]
        print(f"{what}: {deep} / {shallow} per block = x{ratio:.2f} (target <= ~1.5)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="only the 224 cases")
    parser.add_argument(
        "--depth", action="store_true", help="cost per block: resnet110 vs resnet1202"
    )
    parser.add_argument("--one", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.depth:
        depth_scaling()
        return
    if args.one:
        method, name, *shape = args.one
        print(json.dumps(one(method, name, tuple(int(s) for s in shape))))
        return
    import torch

    python = sys.version.split()[0]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, python {python}")
    cases = [c for c in CASES if not args.quick or c[1][-1] == 224]
    header = (
        f"{'model':10} {'input':>14} {'method':>9} {'cold s':>8} {'warm s':>8} "
        f"{'cold MB':>8} {'warm MB':>8}"
    )
    print(header)
    print("-" * len(header))
    for name, shape in cases:
        results = {m: _child(m, name, shape) for m in METHODS}
        for method, r in results.items():
            print(
                f"{name:10} {'x'.join(map(str, shape)):>14} {method:>9} "
                f"{r['cold']['seconds']:8.3f} {r['warm']['seconds']:8.3f} "
                f"{r['cold']['peak_growth_mb']:8.1f} {r['warm']['peak_growth_mb']:8.1f}"
            )
        ours = results["cnnzoo"]
        for other in ("torchinfo", "forward"):
            theirs = results[other]
            ratios = [theirs[when]["seconds"] / ours[when]["seconds"] for when in ("cold", "warm")]
            memory = theirs["warm"]["peak_growth_mb"] / max(ours["warm"]["peak_growth_mb"], 0.1)
            print(
                f"{'':26} {other} / cnnzoo: time x{ratios[0]:.1f} cold, x{ratios[1]:.1f} warm; "
                f"peak memory growth x{memory:.0f} (warm)"
            )
        first_use = ours["cold"]["seconds"] - ours["warm"]["seconds"]
        print(
            f"{'':26} cnnzoo first-call extra: {first_use:.3f} s; torch._dynamo imported: "
            f"{ours['dynamo_imported']}; imports (torch + cnnzoo): {ours['imports_s']:.2f} s"
        )


if __name__ == "__main__":
    main()

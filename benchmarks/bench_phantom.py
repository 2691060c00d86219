"""Speed and label balance of the synthetic fetal MRI phantom.

Prints seconds per volume (median of ``--repeats`` seeds, wall clock and CPU time of this
process) at each matrix, and the positive-slice fraction (slices with brain / all slices) of a
cohort, to compare with the paper's 976 / 4116 = 0.237.

Run from the repository root::

    .venv/bin/python benchmarks/bench_phantom.py                  # matrix 512 and 256, 3 seeds
    .venv/bin/python benchmarks/bench_phantom.py --matrices 256 --fraction-volumes 40
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from umcam_lib.data.phantom import generate_volume, volume_seed


def time_matrix(matrix: int, repeats: int, seed: int) -> tuple[float, float, int]:
    """Median wall and CPU seconds per volume at ``matrix`` over ``repeats`` seeds; mean slice count."""
    walls, cpus, slices = [], [], []
    for i in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        vol = generate_volume(volume_seed(seed, i), matrix=matrix)
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
        slices.append(vol.image.shape[2])
    return statistics.median(walls), statistics.median(cpus), int(np.mean(slices))


def positive_fraction(n_volumes: int, matrix: int, seed: int) -> tuple[float, int, int]:
    """Positive-slice fraction of the first ``n_volumes`` volumes of cohort ``seed``."""
    pos = total = 0
    for i in range(n_volumes):
        mask = generate_volume(volume_seed(seed, i), matrix=matrix).mask
        pos += int(mask.any(axis=(0, 1)).sum())
        total += mask.shape[2]
    return pos / total, pos, total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--matrices", type=int, nargs="+", default=[512, 256])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--fraction-volumes", type=int, default=20)
    ap.add_argument("--fraction-matrix", type=int, default=128,
                    help="matrix for the fraction run (the anatomy does not depend on it)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    generate_volume(0, matrix=64)  # warm-up: imports, allocator
    for m in args.matrices:
        wall, cpu, n = time_matrix(m, args.repeats, args.seed)
        print(f"matrix {m}: {wall:.2f} s/volume wall, {cpu:.2f} s CPU (median of {args.repeats}, ~{n} slices)",
              flush=True)
    frac, pos, total = positive_fraction(args.fraction_volumes, args.fraction_matrix, args.seed)
    print(f"positive-slice fraction: {frac:.3f} ({pos}/{total} slices, {args.fraction_volumes} volumes, "
          f"seed {args.seed}; paper 976/4116 = 0.237)")


if __name__ == "__main__":
    main()

"""Benchmark: SPL slices per second, plain per-slice GeodisTK loop vs the shipped batch engine.

Both paths run the same library code (threshold, seeds, z-score, two geodesic maps, SPL);
they differ only in the geodesic engine and in batching:

- plain:   ``for each slice: gse.spl(image, cam, backend="geodistk")`` (GeodisTK, one slice
           and one seed set per call);
- shipped: ``gse.spl_batch(images, cams, workers=..., chunk_size=...)`` (the vectorised raster
           scan over chunks of slices, foreground and background seed sets together).

The synthetic slices are discs of random size and position on a textured, noisy background,
with a blurred, shifted disc as their CAM. The script also reports the largest difference
between the two paths' SPLs on the slices both computed.

Usage::

    python benchmarks/bench_spl.py --threads 2                 # 256 x 256, the issue's setting
    python benchmarks/bench_spl.py --size 128 --n 128 --workers 1
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np


def synthetic_slices(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` test slices and CAMs, float32 [n, size, size] in [0, 1]."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    images, cams = [], []
    for _ in range(n):
        cy, cx = rng.uniform(0.3, 0.7, 2)
        ry, rx = rng.uniform(0.1, 0.25, 2)
        disc = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
        texture = ndimage.gaussian_filter(rng.standard_normal((size, size)), size / 32)
        img = 0.3 + 0.4 * disc + 0.5 * texture + 0.05 * rng.standard_normal((size, size))
        images.append((img - img.min()) / (img.max() - img.min()))
        shift = rng.integers(-size // 32, size // 32 + 1, 2)
        cam = ndimage.gaussian_filter(np.roll(disc.astype(float), shift, axis=(0, 1)), size / 24)
        cams.append(cam / cam.max())
    return np.asarray(images, np.float32), np.asarray(cams, np.float32)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=256, help="slice height and width (pixels)")
    ap.add_argument("--n", type=int, default=64, help="slices for the shipped batch engine")
    ap.add_argument("--n-plain", type=int, default=8, help="slices for the (slow) plain loop")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (and default workers)")
    ap.add_argument("--workers", type=int, default=None, help="spl_batch workers (default: --threads)")
    ap.add_argument("--chunk-size", type=int, default=32)
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--beta", type=float, default=4.0)
    ap.add_argument("--lamb", type=float, default=1.0)
    ap.add_argument("--iterations", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5, help="timed rounds, alternating plain and shipped")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    import torch

    from umcam_lib import gse

    torch.set_num_threads(args.threads)
    workers = args.workers or args.threads
    images, cams = synthetic_slices(max(args.n, args.n_plain), args.size)
    common = dict(beta=args.beta, lamb=args.lamb, iterations=args.iterations, margin=5, spl_rule="ratio")

    def plain() -> np.ndarray:
        return np.stack([gse.spl(images[i], cams[i], threshold=args.threshold, backend="geodistk", **common)
                         for i in range(args.n_plain)])

    def shipped() -> gse.SPLBatch:
        return gse.spl_batch(images[: args.n], cams[: args.n], args.threshold, workers=workers,
                             chunk_size=args.chunk_size, **common)

    def timed(fn) -> tuple[float, object]:
        t0 = time.perf_counter()
        out = fn()
        return time.perf_counter() - t0, out

    gse.spl_batch(images[:1], cams[:1], args.threshold, **common)  # warm-up (lazy imports)
    # alternate the two in rounds so that a shared machine's changing load affects both alike;
    # report each one's best round, and the median of the per-round ratios
    t_plain, t_ship, ratios = [], [], []
    for _ in range(args.repeats):
        t, ref = timed(plain)
        t_plain.append(t)
        t, batch = timed(shipped)
        t_ship.append(t)
        ratios.append((args.n / t_ship[-1]) / (args.n_plain / t_plain[-1]))
    if batch.n_without_component:
        raise RuntimeError(f"{batch.n_without_component} benchmark slices had no seeds; adjust --threshold")
    diff = float(np.abs(batch.maps[: args.n_plain] - ref).max())
    res = dict(size=args.size, threads=args.threads, workers=workers, chunk_size=args.chunk_size,
               iterations=args.iterations, lamb=args.lamb,
               plain_slices=args.n_plain, plain_slices_per_s=args.n_plain / min(t_plain),
               shipped_slices=args.n, shipped_slices_per_s=args.n / min(t_ship),
               speedup=(args.n / min(t_ship)) / (args.n_plain / min(t_plain)),
               median_round_speedup=float(np.median(ratios)), rounds=args.repeats,
               load_average=os.getloadavg()[0], max_abs_spl_difference=diff)
    print(f"SPL at {args.size}x{args.size}, lamb={args.lamb}, iterations={args.iterations}, "
          f"threads={args.threads}, workers={workers}")
    print(f"  plain GeodisTK loop : {res['plain_slices_per_s']:8.2f} slices/s  ({args.n_plain} slices)")
    print(f"  shipped spl_batch   : {res['shipped_slices_per_s']:8.2f} slices/s  ({args.n} slices)")
    print(f"  speed-up            : {res['speedup']:8.1f} x  (best rounds; median per-round "
          f"{res['median_round_speedup']:.1f} x over {args.repeats} rounds, load average {res['load_average']:.1f})")
    print(f"  max |SPL difference|: {diff:.2e}")
    if args.json:
        from umcam_lib.io import write_json

        write_json(args.json, res)
    return res


if __name__ == "__main__":
    main()

"""Benchmark: Grad-CAM of six layers, one pass for all (ours) vs one pytorch-grad-cam call per layer.

The authors compute the CAM of each block with pytorch-grad-cam's ``GradCAM``, i.e. one forward
and one backward pass per layer. ``umcam_lib.cam.multi_layer_gradcam`` gets all layers from one
forward and one backward pass (without weight gradients). Both run on the same model (random
weights are fine for timing), the same slices and the same device, in batches of
``--batch-size``; the script checks that both give the same maps and prints the times and
their ratio.

Usage::

    python benchmarks/bench_cam.py                       # 256 slices, 128 x 128, width 0.25, 2 threads
    python benchmarks/bench_cam.py --slices 64 --device cuda
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytorch_grad_cam import GradCAM  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

from umcam_lib import runtime  # noqa: E402
from umcam_lib.cam import STUDY_LAYERS, multi_layer_gradcam, resolve_layer_names, working_copy  # noqa: E402
from umcam_lib.cam.baselines import RawGradCAM  # noqa: E402
from umcam_lib.cam.gradcam import upsample_normalise  # noqa: E402
from umcam_lib.models import vgg16_classifier  # noqa: E402


def ours(model: torch.nn.Module, x: torch.Tensor, names: list[str], batch: int) -> torch.Tensor:
    out = [multi_layer_gradcam(model, x[s:s + batch], names).cpu() for s in range(0, len(x), batch)]
    return torch.cat(out, dim=1)


def per_layer(model: torch.nn.Module, x: torch.Tensor, names: list[str], batch: int, cls: type = GradCAM) -> list:
    """pytorch-grad-cam, the authors' way: one GradCAM object and call per layer and batch."""
    modules = dict(model.named_modules())
    maps = []
    for name in names:
        cam = cls(model, [modules[name]])
        try:
            chunks = [cam(input_tensor=x[s:s + batch], targets=[ClassifierOutputTarget(1)] * len(x[s:s + batch]))
                      for s in range(0, len(x), batch)]
        finally:
            cam.activations_and_grads.release()
        maps.append(np.concatenate(chunks))
    return maps


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=256)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--channels-last", action="store_true",
                    help="run both sides on a channels-last copy of the model (as compute_cams does)")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    dev = runtime.select_device(args.device)
    torch.manual_seed(0)
    model = vgg16_classifier(width=args.width).eval()
    model = working_copy(model, dev, channels_last=args.channels_last)
    x = torch.rand(args.slices, 1, args.size, args.size, generator=torch.Generator().manual_seed(0)).to(dev)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    names = resolve_layer_names(model, STUDY_LAYERS)

    # warm-up (allocator, kernels) on one batch for both
    ours(model, x[: args.batch_size], names, args.batch_size)
    per_layer(model, x[: args.batch_size], names[:1], args.batch_size)

    sync(dev)
    t0 = time.perf_counter()
    a = ours(model, x, names, args.batch_size)
    sync(dev)
    t_ours = time.perf_counter() - t0

    t0 = time.perf_counter()
    per_layer(model, x, names, args.batch_size)
    sync(dev)
    t_ref = time.perf_counter() - t0

    # equality on a few slices: pytorch-grad-cam's raw maps with our upsampling / max division
    k = min(8, args.slices)
    ref = per_layer(model, x[:k], names, k, cls=RawGradCAM)
    err = max(float((upsample_normalise(torch.from_numpy(r), x.shape[-2:]) - a[i, :k]).abs().max())
              for i, r in enumerate(ref))

    print(f"device {dev} | threads {torch.get_num_threads()} | {args.slices} slices {args.size}x{args.size} | "
          f"VGG-16 width {args.width} | batch {args.batch_size} | layers {', '.join(STUDY_LAYERS)}"
          f"{' | channels-last' if args.channels_last else ''}")
    print(f"ours, one forward + one backward pass:  {t_ours:8.2f} s  ({1000 * t_ours / args.slices:.1f} ms/slice)")
    print(f"pytorch-grad-cam GradCAM per layer:    {t_ref:8.2f} s  ({1000 * t_ref / args.slices:.1f} ms/slice)")
    print(f"speed-up: {t_ref / t_ours:.2f}x   (max |difference| of the maps on {k} slices: {err:.2e})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

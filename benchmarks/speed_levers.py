"""Seconds per step of the quick profile's UNet and classifier under speed levers, side by side.

Each lever is one way to run the same training step (forward, loss, backward, AdamW step) on a
batch of the quick profile's shape: the UNet at ``seg.batch_size`` 12 slices of 128 x 128
(``seg.width`` 16; baseline channels-last, the quick profile before issue 19 moved it to
contiguous), its prediction of 64 slices (baseline: one pass of 64 channels-last, as
``seg.eval_batch_size`` 64 was; the quick profile now predicts contiguous, 8 at a time), and the VGG classifier at ``classifier.batch_size`` 32 with and
without the equivariance loss of notebook 02. Levers are timed in interleaved rounds (every
lever once per round, ``--rounds`` rounds) so that the load other jobs put on the shared CPU
falls on all of them alike; each round times ``--steps`` steps after one warm-up step and keeps
their median. The table reports the median over rounds, its spread (min-max over rounds), the
speed-up against the lever's baseline, and the load average while it ran.

``--train-check`` also trains the FullySup UNet of a prepared run (``--run``: notebook 01's
slices are enough) for ``--epochs`` epochs with the profile's ``seg`` section under a few
levers (``cpu_bf16=true`` needs the seg.cpu_bf16 option of issue 19, not yet merged) and reports its best validation 3D DSC: a short check that a lever does not cost
accuracy (choose on validation; the test split is not looked at).

Usage::

    OMP_NUM_THREADS=2 python benchmarks/speed_levers.py --rounds 3 --steps 4
    python benchmarks/speed_levers.py --rounds 0 --train-check --run /tmp/run --epochs 8

Writes ``<out>/speed_levers_<profile>.csv`` (one row per lever) and appends the training checks
to ``<out>/speed_levers_<profile>_train.csv``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
import traceback
from pathlib import Path
from typing import Callable

import pandas as pd
import torch

from umcam_lib.config import check_section, load_params, profile_path
from umcam_lib.models.unet import build_unet
from umcam_lib.train import classifier as C

CL = torch.channels_last


def _unet_step(width: int = 16, batch: int = 12, size: int = 128, bf16: bool = False, channels_last: bool = True,
               compile_: bool = False, unet: Callable[[int], torch.nn.Module] = build_unet) -> Callable[[], None]:
    torch.manual_seed(0)
    fmt = CL if channels_last else torch.contiguous_format
    model = unet(width).to(memory_format=fmt).train()
    if compile_:
        model = torch.compile(model, dynamic=False)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    x = torch.rand(batch, 1, size, size).contiguous(memory_format=fmt)
    y = torch.rand(batch, size, size)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        p = torch.log_softmax(logits.float(), 1)
        loss = -(y * p[:, 1] + (1 - y) * p[:, 0]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def _unet_eval(width: int = 16, batch: int = 64, size: int = 128, bf16: bool = False, channels_last: bool = True,
               chunk: int | None = None) -> Callable[[], None]:
    """Predict ``batch`` slices, ``chunk`` at a time (default: all at once), as ``seg_predict.predict_probs``."""
    torch.manual_seed(0)
    fmt = CL if channels_last else torch.contiguous_format
    model = build_unet(width).to(memory_format=fmt).eval()
    x = torch.rand(batch, 1, size, size).contiguous(memory_format=fmt)
    step_size = int(chunk or batch)

    def step() -> None:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            for i in range(0, batch, step_size):
                model(x[i:i + step_size].contiguous(memory_format=fmt)).float().softmax(1)
    return step


def _classifier_step(cfg: dict, batch: int = 32, size: int = 128, bf16: bool = False,
                     equivariance: float | None = None, compile_: bool = False,
                     channels_last: bool = True) -> Callable[[], None]:
    cfg = dict(cfg)
    if equivariance is not None:
        cfg["equivariance"] = equivariance
    fmt = CL if channels_last else torch.contiguous_format
    model = C.build_classifier(cfg, seed=0).to(memory_format=fmt).train()
    if compile_:
        model = torch.compile(model, dynamic=False)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    x = torch.rand(batch, 1, size, size).contiguous(memory_format=fmt)
    y = torch.randint(0, 2, (batch,))

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss, _ = C._batch_loss(model, x, y, None, float(cfg["equivariance"]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def _lighter_unet(width: int) -> torch.nn.Module:
    """BasicUNet with the first level at half ``width`` and the rest as width (a lighter UNet)."""
    from monai.networks.nets import BasicUNet
    w = int(width)
    return BasicUNet(spatial_dims=2, in_channels=1, out_channels=2, features=(w // 2, w, 2 * w, 4 * w, 8 * w, w // 2))


def levers(clf_cfg: dict, with_compile: bool) -> list[tuple[str, str, str, Callable[[], Callable[[], None]]]]:
    """(group, lever, baseline lever, factory) of every lever timed."""
    base_u, base_e, base_c = "unet w16 fp32 channels_last", "unet eval w16 fp32", "classifier eq=1 fp32"
    out = [
        ("unet train step (12 x 128^2)", base_u, base_u, lambda: _unet_step()),
        ("unet train step (12 x 128^2)", "unet w16 fp32 contiguous", base_u, lambda: _unet_step(channels_last=False)),
        ("unet train step (12 x 128^2)", "unet w16 bf16 autocast", base_u, lambda: _unet_step(bf16=True)),
        ("unet train step (12 x 128^2)", "unet w8 fp32", base_u, lambda: _unet_step(width=8)),
        ("unet train step (12 x 128^2)", "unet w8 bf16 autocast", base_u, lambda: _unet_step(width=8, bf16=True)),
        ("unet train step (12 x 128^2)", "unet lighter (8,16,32,64,128,8) fp32", base_u,
         lambda: _unet_step(unet=_lighter_unet)),
        ("unet train step (12 x 128^2)", "unet w16 fp32 batch 24 (per 12 slices)", base_u,
         lambda: _halved(_unet_step(batch=24))),
        ("unet eval forward (64 x 128^2)", base_e, base_e, lambda: _unet_eval()),
        ("unet eval forward (64 x 128^2)", "unet eval w16 bf16 autocast", base_e, lambda: _unet_eval(bf16=True)),
        ("unet eval forward (64 x 128^2)", "unet eval w16 fp32 channels_last, 8 at a time", base_e,
         lambda: _unet_eval(chunk=8)),
        ("unet eval forward (64 x 128^2)", "unet eval w16 fp32 contiguous", base_e,
         lambda: _unet_eval(channels_last=False)),
        ("unet eval forward (64 x 128^2)", "unet eval w16 fp32 contiguous, 8 at a time (quick)", base_e,
         lambda: _unet_eval(channels_last=False, chunk=8)),
        ("unet eval forward (64 x 128^2)", "unet eval w16 bf16 contiguous, 8 at a time", base_e,
         lambda: _unet_eval(channels_last=False, chunk=8, bf16=True)),
        ("classifier train step (32 x 128^2)", base_c, base_c, lambda: _classifier_step(clf_cfg)),
        ("classifier train step (32 x 128^2)", "classifier eq=0 fp32", base_c,
         lambda: _classifier_step(clf_cfg, equivariance=0.0)),
        ("classifier train step (32 x 128^2)", "classifier eq=1 bf16 autocast", base_c,
         lambda: _classifier_step(clf_cfg, bf16=True)),
        ("classifier train step (32 x 128^2)", "classifier eq=1 fp32 contiguous", base_c,
         lambda: _classifier_step(clf_cfg, channels_last=False)),
        # closer to the paper's VGG-16 (issue 20, item 4): the cost of a wider classifier
        ("classifier train step (32 x 128^2)", "classifier width 0.25 eq=1 fp32", base_c,
         lambda: _classifier_step({**clf_cfg, "width": 0.25})),
        ("classifier train step (32 x 128^2)", "classifier width 0.5 eq=1 fp32", base_c,
         lambda: _classifier_step({**clf_cfg, "width": 0.5})),
        ("classifier train step (32 x 128^2)", "classifier batch norm off eq=1 fp32", base_c,
         lambda: _classifier_step({**clf_cfg, "batch_norm": False})),
    ]
    if with_compile:
        out += [("unet train step (12 x 128^2)", "unet w16 fp32 torch.compile", base_u,
                 lambda: _unet_step(compile_=True)),
                ("classifier train step (32 x 128^2)", "classifier eq=1 fp32 torch.compile", base_c,
                 lambda: _classifier_step(clf_cfg, compile_=True))]
    return out


class _halved:
    """Time of one step of a double batch, reported per half (seconds per 12 slices)."""

    def __init__(self, step: Callable[[], None]) -> None:
        self.step, self.factor = step, 0.5

    def __call__(self) -> None:
        self.step()


def time_levers(table: list, rounds: int, steps: int, threads: int) -> pd.DataFrame:
    torch.set_num_threads(threads)
    built: dict[str, Callable[[], None] | str] = {}
    for _, name, _, make in table:  # build (and warm up / compile) once, outside the rounds
        try:
            t0 = time.perf_counter()
            built[name] = make()
            built[name]()
            print(f"built {name} ({time.perf_counter() - t0:.1f} s with its first step)", flush=True)
        except Exception as exc:  # a lever that does not run (torch.compile on this CPU) is reported as such
            built[name] = f"fails: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
            print(f"{name}: {built[name]}", flush=True)
            traceback.print_exc(limit=1)
    times: dict[str, list[float]] = {name: [] for name in built}
    loads = []
    for r in range(rounds):
        for _, name, _, _ in table:
            step = built[name]
            if isinstance(step, str):
                continue
            factor = getattr(step, "factor", 1.0)
            step()
            ts = []
            for _ in range(steps):
                t0 = time.perf_counter()
                step()
                ts.append((time.perf_counter() - t0) * factor)
            times[name].append(statistics.median(ts))
        loads.append(os.getloadavg()[0])
        print(f"round {r + 1}/{rounds} done, load {loads[-1]:.2f}", flush=True)
    rows = []
    for group, name, base, _ in table:
        t = times[name]
        tb = times.get(base) or []
        sec = statistics.median(t) if t else float("nan")
        rows.append({"group": group, "lever": name, "seconds": sec,
                     "seconds_min": min(t) if t else float("nan"), "seconds_max": max(t) if t else float("nan"),
                     "speedup": (statistics.median(tb) / sec) if t and tb else float("nan"),
                     "note": built[name] if isinstance(built[name], str) else "",
                     "rounds": len(t), "steps": steps, "threads": threads,
                     "load_avg_1min": statistics.mean(loads) if loads else float("nan")})
    return pd.DataFrame(rows)


def train_check(run: str, profile: str, epochs: int, threads: int, checks: list[str]) -> pd.DataFrame:
    """Best validation DSC of the FullySup UNet after ``epochs`` epochs under each lever of ``checks``."""
    import yaml
    from umcam_lib.data.artifacts import load_slices
    from umcam_lib.train import segmentation as S

    torch.set_num_threads(threads)
    slices = load_slices(run)
    base = check_section("seg", load_params(profile_path(profile))["seg"])
    targets = S.all_targets(slices, run, base, variants=("FullySup",))
    rows = []
    for check in checks:
        name, *changes = check.split(",")
        cfg = {**base, "epochs": epochs, "patience": None, "min_epochs": 1}
        for kv in changes:
            k, _, v = kv.partition("=")
            cfg[k] = yaml.safe_load(v)
        out = Path("/tmp") / "speed_levers" / name
        for f in ("last.pt", "best.pt", "history.csv"):
            (out / f).unlink(missing_ok=True)
        t0 = time.perf_counter()
        S.train_variant("FullySup", slices, targets["FullySup"], cfg, run, "cpu", False, 0, out_dir=out,
                        progress=False)
        hist = pd.read_csv(out / "history.csv")
        rows.append({"check": name, "changes": " ".join(changes) or "(quick profile)", "epochs": epochs,
                     "best_val_dsc": hist["val_dsc"].max(), "best_epoch": int(hist.loc[hist["val_dsc"].idxmax(), "epoch"]),
                     "val_dsc_last": float(hist["val_dsc"].iloc[-1]),
                     "seconds_per_epoch": float(hist["seconds"].mean()), "seconds": time.perf_counter() - t0,
                     "load_avg_1min": os.getloadavg()[0]})
        print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (minutes of compiling)")
    ap.add_argument("--train-check", action="store_true")
    ap.add_argument("--run", default="runs/quick")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--checks", nargs="*", default=["fp32", "bf16,cpu_bf16=true", "w8,width=8"],
                    help="NAME[,key=value,...] seg changes per training check")
    ap.add_argument("--only", help="time only the levers whose name contains this text (and their baselines)")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    clf_cfg = C.check_config(load_params(profile_path(args.profile))["classifier"])
    if args.rounds:
        table = levers(clf_cfg, args.compile)
        if args.only:
            keep = {name for _, name, _, _ in table if args.only in name}
            keep |= {base for _, name, base, _ in table if name in keep}
            table = [t for t in table if t[1] in keep]
        df = time_levers(table, args.rounds, args.steps, args.threads)
        suffix = "" if not args.only else "_" + "".join(c if c.isalnum() else "-" for c in args.only)
        df.to_csv(out / f"speed_levers_{args.profile}{suffix}.csv", index=False)
        print(df.round(3).to_string(index=False))
    if args.train_check:
        tc = train_check(args.run, args.profile, args.epochs, args.threads, args.checks)
        path = out / f"speed_levers_{args.profile}_train.csv"
        tc.to_csv(path, mode="a", header=not path.is_file(), index=False)
        print(tc.round(2).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

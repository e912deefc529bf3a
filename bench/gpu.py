"""How fast the default CNN trains on one GPU under JAX, and how much of the GPU a trial uses.

For a machine with one GPU, JAX with CUDA and no TensorFlow, where only a few
uploaded wheels can be added. Keras 3.15 under JAX imports, beyond JAX and its
own dependencies (numpy, ml_dtypes, scipy, opt_einsum): namex, optree (which
needs typing_extensions), absl-py, rich and packaging; h5py only to save
models, which this script does not do. Upload the wheels of those that are
missing (keras is pure Python, optree is compiled: take the wheel of the
machine's Python) to ``.whl/`` and run, from the repository root::

    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \\
        && export PYTHONPATH=/tmp/site
    KERAS_BACKEND=jax python3 -m bench.gpu --out bench/results/gpu.json

A few minutes on an H200. It imports only ``neural_net.model`` of Caviar (no
hyperopt, pydot, tqdm or TensorFlow), trains on random CIFAR-100-shaped uint8
images (``--images``, 50,000 by default) through ``neural_net.train.Batches``,
the batches a trial gets, and reports:

- images/s of each model (``DEMO_PARAMS`` of ``neural_net.space``, copied here
  since hyperopt is not on that machine, and the best model of the Paperspace
  sample run) in float32, mixed_bfloat16 and mixed_float16: the median of the
  epochs after the first;
- the compile time of a trial: the first epoch's time minus a steady epoch's;
- the forward FLOPs per image, counted from the convolutions and dense layers
  (training costs about 3 times that: forward, and backward for inputs and
  weights), and the share of ``--peak-tflops`` reached; the default, 989 TFLOP/s,
  is the H200's dense bfloat16 tensor-core peak, so float32 runs are far below
  it by design;
- the aggregate images/s of 1, 2, 4 and 8 trials of the demo model training at
  once on the GPU, as separate processes sharing ``--images`` and each given
  ``XLA_PYTHON_CLIENT_MEM_FRACTION`` = 0.9 / trials of the GPU's memory; they
  wait for each other after compiling, so their steady epochs overlap, and
  share a JAX compilation cache (fresh for each run of this script), so only
  the first compiles. One trial is the demo model's run alone.

Prints a markdown table and writes everything as JSON to ``--out``.
``--quick`` is a CPU smoke test (tiny data, a smaller model, XLA's cheapest
compilation), which ``tests/neural_net/test_nn_bench_gpu.py`` runs.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("bench.gpu")

ROOT = Path(__file__).resolve().parents[1]
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
H200_BF16_DENSE_TFLOPS = 989.0
MODELS: dict[str, dict[str, Any]] = {
    # neural_net.space.DEMO_PARAMS (test_nn_bench_gpu checks that the two stay equal)
    "demo": {
        "lr_rate_mult": 1.0, "l2_weight_reg_mult": 1.0, "batch_size": 300, "optimizer": "Nadam",
        "coarse_labels_weight": 0.2, "conv_dropout_drop_proba": 0.175, "fc_dropout_drop_proba": 0.3, "use_BN": True,
        "first_conv": 4, "residual": 4, "conv_hiddn_units_mult": 1.0, "nb_conv_pool_layers": 3,
        "conv_pool_res_start_idx": 0.0, "pooling_type": "inception", "conv_kernel_size": 3.0,
        "res_conv_kernel_size": 3.0, "fc_units_1_mult": 1.0, "one_more_fc": 1.0, "activation": "elu",
    },
    # The best model of the Paperspace sample run.
    "paperspace_best": {
        "activation": "elu", "batch_size": 320, "coarse_labels_weight": 0.3067, "conv_dropout_drop_proba": 0.2592,
        "conv_hiddn_units_mult": 1.5958, "conv_kernel_size": 3, "conv_pool_res_start_idx": 0,
        "fc_dropout_drop_proba": 0.4322, "fc_units_1_mult": 1.3084, "first_conv": 3, "l2_weight_reg_mult": 0.4121,
        "lr_rate_mult": 0.6549, "nb_conv_pool_layers": 3, "one_more_fc": None, "optimizer": "Nadam",
        "pooling_type": "avg", "res_conv_kernel_size": 2, "residual": 3, "use_BN": True,
    },
}
# --quick: the same code paths in seconds on a CPU.
QUICK_CHANGES = {"nb_conv_pool_layers": 1, "residual": 1, "conv_hiddn_units_mult": 0.1, "fc_units_1_mult": 0.02,
                 "one_more_fc": None, "batch_size": 16}
QUICK_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
SHAPE, N_FINE, N_COARSE = (32, 32, 3), 100, 20
BARRIER_TIMEOUT_S = 600  # a peer that died while compiling must not hang the others


def forward_flops(model: Any) -> int:
    """Multiply-adds x 2 of one image through the model's Conv2D and Dense layers (the rest is negligible)."""
    import keras  # in the trials' processes only, as in ``train``

    flops = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, height, width, filters = layer.output.shape
            kernel_height, kernel_width = layer.kernel_size
            flops += 2 * height * width * filters * kernel_height * kernel_width * layer.input.shape[-1]
        elif isinstance(layer, keras.layers.Dense):
            flops += 2 * layer.input.shape[-1] * layer.units
    return int(flops)


def train(name: str, precision: str, images: int, epochs: int, quick: bool, barrier: Path | None,
          trials: int) -> dict[str, Any]:
    """Train one model (in this process) and time its epochs; with ``barrier``, wait there for ``trials`` peers.

    Keras and Caviar are imported here, in the trials' processes: the parent must leave the GPU's memory alone.
    """
    import keras
    import numpy as np

    from neural_net.batches import Batches
    from neural_net.datasets import Split
    from neural_net.model import build_model

    params = {**MODELS[name], **(QUICK_CHANGES if quick else {})}
    rng = np.random.default_rng(0)
    split = Split(rng.integers(0, 256, (images, *SHAPE), dtype=np.uint8), rng.integers(0, N_FINE, images),
                  rng.integers(0, N_COARSE, images))
    keras.utils.set_random_seed(0)
    model = build_model(params, SHAPE, N_FINE, N_COARSE, precision=precision)
    ends: list[float] = []  # each epoch's end, and the end of the wait at the barrier

    class Clock(keras.callbacks.Callback):
        """Epoch ends (the metrics are fetched there, so the device has finished), and the barrier."""

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            ends.append(time.perf_counter())
            if barrier is not None and epoch == 0:
                (barrier / str(os.getpid())).touch()
                deadline = time.monotonic() + BARRIER_TIMEOUT_S
                while (ready := len(list(barrier.iterdir()))) < trials:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"only {ready} of {trials} trials compiled in {BARRIER_TIMEOUT_S} s")
                    time.sleep(0.05)
                ends.append(time.perf_counter())

    start = time.perf_counter()
    batches = Batches(split, int(params["batch_size"]), seed=0)
    model.fit(batches, steps_per_epoch=len(batches), epochs=epochs, shuffle=False, verbose=0, callbacks=[Clock()])
    first = ends[0] - start
    steady = statistics.median(b - a for a, b in itertools.pairwise(ends[-epochs:]))  # epochs 2.., barrier excluded
    return {
        "model": name, "precision": precision, "images": images, "batch_size": int(params["batch_size"]),
        "parameters": int(model.count_params()), "forward_flops_per_image": forward_flops(model),
        "first_epoch_s": first, "steady_epoch_s": steady, "compile_s": max(0.0, first - steady),
        "images_per_s": images / steady,
    }


def _run_trials(name: str, precision: str, args: argparse.Namespace, trials: int,
                cache: str | None = None) -> list[dict[str, Any]]:
    """``trials`` processes training ``name`` at once, each on its share of ``--images``; their results."""
    with tempfile.TemporaryDirectory() as barrier:
        env = {**os.environ, "XLA_PYTHON_CLIENT_MEM_FRACTION": f"{0.9 / trials:.3f}"}
        if args.quick:
            env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {QUICK_XLA_FLAGS}".strip()
        if cache:
            env["JAX_COMPILATION_CACHE_DIR"] = cache
        command = [sys.executable, "-m", "bench.gpu", "--train", name, precision, "--images",
                   str(max(1, args.images // trials)), "--epochs", str(args.epochs), "--barrier", barrier,
                   "--trials", str(trials)] + (["--quick"] if args.quick else [])
        processes = [subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
                     for _ in range(trials)]
        outputs = [process.communicate()[0] for process in processes]
    failed = [process.returncode for process in processes if process.returncode]
    if failed:
        raise SystemExit(f"{trials} trial(s) of {name} in {precision}: exit codes {failed}")
    return [json.loads(output.strip().splitlines()[-1]) for output in outputs]


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every model in every precision alone, then the demo model as 1..8 trials side by side."""
    peak = args.peak_tflops * 1e12
    runs = []
    for name in args.models:
        for precision in args.precisions:
            (run,) = _run_trials(name, precision, args, 1)
            run["share_of_peak"] = run["images_per_s"] * 3 * run["forward_flops_per_image"] / peak
            runs.append(run)
            log.info("%s %s: %.0f images/s, compiled in %.1f s", name, precision, run["images_per_s"],
                     run["compile_s"])
    alone = {(run["model"], run["precision"]): run for run in runs}
    together = []
    with tempfile.TemporaryDirectory() as cache:
        for trials in args.concurrency:
            key = ("demo", args.concurrency_precision)
            results = [alone[key]] if trials == 1 and key in alone else _run_trials(*key, args, trials, cache)
            total = sum(result["images_per_s"] for result in results)
            together.append({"trials": trials, "images_per_s": total,
                             "share_of_peak": total * 3 * results[0]["forward_flops_per_image"] / peak})
            log.info("%d trials at once: %.0f images/s in all", trials, total)
    return {"peak_tflops": args.peak_tflops, "quick": args.quick, "runs": runs, "concurrent": together}


def markdown(report: dict[str, Any]) -> str:
    """The report as two markdown tables."""
    lines = [
        "| model | precision | images/s | compile s | GFLOP/image (fwd) | share of peak |",
        "|---|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {run['model']} | {run['precision']} | {run['images_per_s']:.0f} | {run['compile_s']:.1f} | "
        f"{run['forward_flops_per_image'] / 1e9:.3f} | {run['share_of_peak']:.1%} |"
        for run in report["runs"]
    ]
    lines += ["", "| demo trials at once | images/s in all | share of peak |", "|---:|---:|---:|"]
    lines += [f"| {row['trials']} | {row['images_per_s']:.0f} | {row['share_of_peak']:.1%} |"
              for row in report["concurrent"]]
    lines += ["", f"Peak taken as {report['peak_tflops']:g} TFLOP/s (training = 3 x forward FLOPs)."]
    return "\n".join(lines)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, help="where to write the JSON report")
    p.add_argument("--quick", action="store_true", help="a CPU smoke test: tiny data, a smaller model")
    p.add_argument("--images", type=int, help="training images per measurement (default 50000, quick 64)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per run, the first one compiles (at least 2)")
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS), help="default: both")
    p.add_argument("--precisions", nargs="+", choices=PRECISIONS, help="default: all three (quick: float32)")
    p.add_argument("--concurrency", nargs="+", type=int, help="trials at once (default 1 2 4 8, quick 1 2)")
    p.add_argument("--concurrency-precision", choices=PRECISIONS, help="default mixed_bfloat16 (quick: float32)")
    p.add_argument("--peak-tflops", type=float, default=H200_BF16_DENSE_TFLOPS,
                   help="the device's peak matrix throughput (default: H200 dense bfloat16)")
    p.add_argument("--train", nargs=2, metavar=("MODEL", "PRECISION"), help=argparse.SUPPRESS)
    p.add_argument("--barrier", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--trials", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.epochs < 2:
        p.error(f"--epochs must be at least 2 (the first one compiles), got {args.epochs}")
    if args.train and (args.train[0] not in MODELS or args.train[1] not in PRECISIONS):
        p.error(f"--train takes a model of {list(MODELS)} and a precision of {list(PRECISIONS)}, got {args.train}")
    args.images = args.images or (64 if args.quick else 50_000)
    args.precisions = args.precisions or (["float32"] if args.quick else list(PRECISIONS))
    args.concurrency = args.concurrency or ([1, 2] if args.quick else [1, 2, 4, 8])
    args.concurrency_precision = args.concurrency_precision or ("float32" if args.quick else "mixed_bfloat16")
    return args


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse(argv)
    if args.train:
        print(json.dumps(train(*args.train, args.images, args.epochs, args.quick, args.barrier, args.trials)))
        return
    report = measure(args)
    print(markdown(report))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""The measurements of `make gpu-check` that every model shares; each subproject's gpu_check script describes its
model as a `ModelCase` and hands it to `check_model`.

For one model, from one set of seeded weights: N training steps in float32 and in bf16 autocast (finite losses, first
bf16 loss within 2 % of float32), inference in both (captions, boxes or masks compared with float32 by the case's
agreement function), throughput of each, the same again under torch.compile, peak GPU memory per phase, and the FLOPs
of one training step and one inference call counted from the shapes of the ops the model runs (torch's
FlopCounterMode: matrix products, convolutions and attention; recurrent kernels such as LSTM or SRU are not counted).
Phases after the four checked ones stop once the model's time budget is spent and are marked skipped.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import logging
import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from tools.files import write_text_atomic

logger = logging.getLogger("gpu_check")

H100_BF16_DENSE_FLOPS = 989e12  # NVIDIA's H100 SXM figure for dense bf16 tensor-core work
BF16_FIRST_LOSS_TOLERANCE = 0.02
CAPTION_AGREEMENT_MIN = 0.90
BOX_MAX_PIXELS = 1.0
MASK_IOU_MIN = 0.99
PRECISIONS = ("fp32", "bf16")


@dataclass
class ModelCase:
    """One model at one size, with its inputs and the functions the harness calls.

    ``train_loss(model, batch)`` runs the forward pass and returns the scalar loss (called inside autocast);
    ``infer(model, batch)`` returns the prediction (eval mode, no grad) and ``agreement(fp32, bf16)`` compares two
    predictions, returning a dict with at least ``pass``. ``inference_compile_targets`` names the submodules that
    inference calls (a decoding loop calls the decoder, not the model's forward).

    Inference is compared on weights first fitted in float32 for ``fit_steps`` Adam steps (``fit_lr``) to
    ``fit_batch``, the inference inputs with synthetic targets: random weights give near-tied scores (almost
    uniform word distributions, anchor scores, mask logits around 0), where any rounding flips an argmax or a
    threshold, so the comparison would measure the ties rather than bf16. A trained model is confident; so is
    the fitted one.
    """

    name: str
    build: Callable[[], nn.Module]
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer]
    train_batch: Any
    train_samples: int
    train_loss: Callable[[nn.Module, Any], torch.Tensor]
    infer_batch: Any
    infer_items: int
    infer: Callable[[nn.Module, Any], Any]
    agreement: Callable[[Any, Any], dict]
    fit_batch: Any
    fit_steps: int
    fit_lr: float
    inference_compile_targets: Callable[[nn.Module], list[nn.Module]] = field(default=lambda model: [model])
    describe: dict = field(default_factory=dict)


@dataclass
class Settings:
    device: torch.device
    tiny: bool
    train_steps: int
    infer_iters: int
    compile_backend: str  # "inductor", "eager" (tracing only) or "none"
    budget_s: float
    started: float = field(default_factory=time.monotonic)

    def out_of_time(self) -> bool:
        return time.monotonic() - self.started > self.budget_s

    @property
    def on_gpu(self) -> bool:
        return self.device.type == "cuda"


def parse_settings(description: str, *, train_steps: int, infer_iters: int, budget_s: float
                   ) -> tuple[argparse.Namespace, Settings]:
    """The flags every subproject's gpu_check script takes (tools/gpu_check.py passes them on), parsed into the run's
    settings; ``train_steps`` and ``infer_iters`` are for the paper size (``--tiny`` runs 3 and 1)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="narrow widths and small batches (CPU test)")
    parser.add_argument("--out", type=Path, required=True, help="JSON file for this subproject's results")
    parser.add_argument("--budget", type=float, default=None, help="seconds for this subproject (soft)")
    parser.add_argument("--compile_backend", choices=["inductor", "eager", "none"], default=None,
                        help="torch.compile backend (default inductor on CUDA; none on CPU, where inductor "
                             "compiles C++ for minutes; eager exercises the compile path cheaply)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check: --device cuda but torch sees no CUDA device; use --device cpu")
    device = torch.device(args.device)
    torch.manual_seed(0)  # inputs drawn from the global generator (gin's bench batch) are the same every run
    backend = args.compile_backend or ("inductor" if device.type == "cuda" else "none")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # the float32 reference must be float32
        torch.backends.cudnn.allow_tf32 = False
    settings = Settings(device, args.tiny, 3 if args.tiny else train_steps, 1 if args.tiny else infer_iters, backend,
                        args.budget if args.budget is not None else budget_s)
    return args, settings


def autocast(precision: str, device: torch.device):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class Stopwatch:
    """Wall time on CUDA; on CPU the process's CPU time, which equals wall time on an idle core and stays meaningful
    on a shared, oversubscribed machine."""

    def __init__(self, device: torch.device):
        self.device = device
        self._clock = time.perf_counter if device.type == "cuda" else time.process_time

    def __enter__(self) -> "Stopwatch":
        sync(self.device)
        self._start = self._clock()
        return self

    def __exit__(self, *exc) -> None:
        sync(self.device)
        self.seconds = self._clock() - self._start


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mib(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None


def count_flops(fn: Callable[[], Any]) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def rate_figures(flops: int, calls_per_s: float, settings: Settings) -> dict:
    """Achieved FLOP/s and, on CUDA, its share of the H100's bf16 dense peak (MFU; null on CPU)."""
    achieved = flops * calls_per_s
    return {"achieved_tflops": round(achieved / 1e12, 4),
            "mfu": round(achieved / H100_BF16_DENSE_FLOPS, 5) if settings.on_gpu else None}


def fresh_model(case: ModelCase, state: dict, settings: Settings) -> nn.Module:
    model = case.build()
    model.load_state_dict(state)
    return model.to(settings.device)


def train_phase(case: ModelCase, state: dict, precision: str, settings: Settings, flops: int,
                compile_backend: str | None = None) -> dict:
    """``train_steps`` optimizer steps from the seeded weights; the first is the warm-up (and the compile)."""
    model = fresh_model(case, state, settings).train()
    if compile_backend:
        model.compile(backend=compile_backend)
    optimizer = case.make_optimizer(model)
    reset_peak_memory(settings.device)
    torch.manual_seed(1)  # the same dropout draws for every precision
    losses: list[float] = []

    def step() -> None:
        optimizer.zero_grad()
        with autocast(precision, settings.device):
            loss = case.train_loss(model, case.train_batch)
        loss.float().backward()
        optimizer.step()
        losses.append(loss.item())

    step()
    with Stopwatch(settings.device) as watch:
        for _ in range(settings.train_steps - 1):
            step()
    samples_per_s = case.train_samples * (settings.train_steps - 1) / watch.seconds
    return {"losses": [round(x, 6) for x in losses], "losses_finite": all(math.isfinite(x) for x in losses),
            "train_samples_per_s": round(samples_per_s, 3), "peak_memory_mib": peak_memory_mib(settings.device),
            **rate_figures(flops, samples_per_s / case.train_samples, settings)}


def inference_phase(case: ModelCase, state: dict, precision: str, settings: Settings, flops: int,
                    compile_backend: str | None = None) -> tuple[dict, Any]:
    model = fresh_model(case, state, settings).eval()
    if compile_backend:
        for module in case.inference_compile_targets(model):
            module.compile(backend=compile_backend, dynamic=True)
    reset_peak_memory(settings.device)

    @torch.no_grad()
    def run() -> Any:
        with autocast(precision, settings.device):
            return case.infer(model, case.infer_batch)

    prediction = run()
    with Stopwatch(settings.device) as watch:
        for _ in range(settings.infer_iters):
            run()
    items_per_s = case.infer_items * settings.infer_iters / watch.seconds
    return ({"infer_items_per_s": round(items_per_s, 3), "peak_memory_mib": peak_memory_mib(settings.device),
             **rate_figures(flops, items_per_s / case.infer_items, settings)}, prediction)


def fit_for_inference(case: ModelCase, state: dict, settings: Settings) -> tuple[dict, dict]:
    """The seeded weights after ``fit_steps`` float32 steps on the inference inputs (see ModelCase)."""
    model = fresh_model(case, state, settings).train()
    for module in model.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            module.eval()  # no dropout: a few steps then suffice to memorise the targets
    optimizer = torch.optim.Adam(model.parameters(), lr=case.fit_lr)
    losses = []
    for _ in range(case.fit_steps):
        optimizer.zero_grad()
        loss = case.train_loss(model, case.fit_batch)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    report = {"steps": case.fit_steps, "lr": case.fit_lr, "first_loss": round(losses[0], 5),
              "last_loss": round(losses[-1], 5)}
    return copy.deepcopy(model.state_dict()), report


def step_flops(case: ModelCase, state: dict, settings: Settings) -> tuple[int, int]:
    """FLOPs of one float32 training step (forward and backward) and of one inference call."""
    model = fresh_model(case, state, settings).train()
    train = count_flops(lambda: case.train_loss(model, case.train_batch).float().backward())
    model.eval()
    with torch.no_grad():
        infer = count_flops(lambda: case.infer(model, case.infer_batch))
    return train, infer


def failure(what: str, error: Exception) -> dict:
    """A phase that raised: the first line of the error goes into the JSON and the run goes on."""
    logger.warning("%s failed: %s: %s", what, type(error).__name__, error)
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return {"error": f"{type(error).__name__}: {lines[-1][:300] if lines else ''}"}


def check_model(case: ModelCase, settings: Settings,
                extras: Callable[[Callable[[], nn.Module], Settings], dict] | None = None) -> dict:
    """Every figure for one model; ``extras(fresh_model, settings)`` adds the model's own measurements, where
    ``fresh_model()`` gives a new copy of the seeded float32 model on the device. A phase that raises is
    recorded as an error (and fails the checks); the others still run."""
    torch.manual_seed(0)
    state = copy.deepcopy(case.build().state_dict())
    params = sum(t.numel() for t in state.values() if t.is_floating_point())
    train_flops, infer_flops = step_flops(case, state, settings)
    logger.info("%s: %.3g FLOP per training step (%d samples), %.3g per inference call (%d items)",
                case.name, train_flops, case.train_samples, infer_flops, case.infer_items)
    result: dict[str, Any] = {
        "model": case.name, **case.describe, "parameters": params,
        "train_batch": case.train_samples, "infer_batch": case.infer_items,
        "train_flops_per_step": train_flops, "infer_flops_per_call": infer_flops,
        "train": {}, "inference": {}, "compile_backend": settings.compile_backend,
    }
    for precision in PRECISIONS:
        try:
            result["train"][precision] = train_phase(case, state, precision, settings, train_flops)
        except Exception as error:  # reported in the JSON; the other phases still run
            result["train"][precision] = failure(f"{case.name} train/{precision}", error)
    fitted, result["fit_for_inference"] = fit_for_inference(case, state, settings)
    predictions = {}
    for precision in PRECISIONS:
        try:
            result["inference"][precision], predictions[precision] = inference_phase(
                case, fitted, precision, settings, infer_flops)
        except Exception as error:  # reported in the JSON; the other phases still run
            result["inference"][precision] = failure(f"{case.name} inference/{precision}", error)
    agreement = (case.agreement(predictions["fp32"], predictions["bf16"]) if len(predictions) == 2
                 else {"pass": False, "skipped": "an inference phase failed"})
    result["checks"] = verdicts(result["train"], agreement)
    if extras is not None:
        try:
            result["extras"] = extras(lambda: fresh_model(case, state, settings), settings)
        except Exception as error:  # reported in the JSON; the other phases still run
            result["extras"] = failure(f"{case.name} extras", error)
    result["compiled"] = compiled_phases(case, state, fitted, settings, train_flops, infer_flops)
    result["seconds"] = round(time.monotonic() - settings.started, 1)
    return result


def compiled_phases(case: ModelCase, state: dict, fitted: dict, settings: Settings, train_flops: int,
                    infer_flops: int) -> dict:
    if settings.compile_backend == "none":
        return {"skipped": "torch.compile not run (--compile_backend none: the CPU default)"}
    out: dict[str, Any] = {}
    for precision in reversed(PRECISIONS):  # bf16 first: the configuration a GPU run would use
        for kind in ("train", "inference"):
            key = f"{kind}/{precision}"
            if settings.out_of_time():
                out[key] = {"skipped": "time budget spent"}
                continue
            try:
                if kind == "train":
                    out[key] = train_phase(case, state, precision, settings, train_flops, settings.compile_backend)
                else:
                    out[key] = inference_phase(case, fitted, precision, settings, infer_flops,
                                               settings.compile_backend)[0]
            except Exception as error:  # a model that does not compile is a finding, not a crash
                out[key] = failure(f"{case.name} compiled {key}", error)
    return out


def verdicts(train: dict, agreement: dict) -> dict:
    fp32, bf16 = train["fp32"], train["bf16"]
    ran = "losses" in fp32 and "losses" in bf16
    gap = abs(bf16["losses"][0] - fp32["losses"][0]) / max(abs(fp32["losses"][0]), 1e-12) if ran else math.inf
    checks = {
        "losses_finite": ran and fp32["losses_finite"] and bf16["losses_finite"],
        "first_loss_rel_gap": round(gap, 6) if ran else None, "first_loss_rel_gap_max": BF16_FIRST_LOSS_TOLERANCE,
        "first_loss_within_tolerance": gap <= BF16_FIRST_LOSS_TOLERANCE,
        "inference_agreement": agreement,
    }
    checks["pass"] = bool(checks["losses_finite"] and checks["first_loss_within_tolerance"] and agreement["pass"])
    return checks


def caption_agreement(fp32: list[tuple[int, ...]], bf16: list[tuple[int, ...]]) -> dict:
    """Share of items whose greedy caption (token ids) is identical under bf16."""
    same = sum(a == b for a, b in zip(fp32, bf16, strict=True)) / len(fp32)
    return {"metric": "identical greedy captions", "value": round(same, 4), "min": CAPTION_AGREEMENT_MIN,
            "distinct_fp32_captions": len(set(fp32)), "pass": same >= CAPTION_AGREEMENT_MIN}


def token_rows(ids: torch.Tensor) -> list[tuple[int, ...]]:
    return [tuple(row) for row in ids.cpu().tolist()]


def box_agreement(fp32: torch.Tensor, bf16: torch.Tensor) -> dict:
    """Largest coordinate difference (pixels) between the (N, 4) boxes."""
    diff = (fp32.float() - bf16.float()).abs()
    worst = float(diff.max())
    return {"metric": "max box coordinate difference (px)", "value": round(worst, 4), "max": BOX_MAX_PIXELS,
            "share_within": round(float((diff.amax(1) <= BOX_MAX_PIXELS).float().mean()), 4),
            "pass": worst <= BOX_MAX_PIXELS}


def mask_agreement(fp32: torch.Tensor, bf16: torch.Tensor) -> dict:
    """Smallest per-item IoU between the boolean (N, H, W) masks (two empty masks agree: IoU 1)."""
    a, b = fp32.flatten(1).bool(), bf16.flatten(1).bool()
    inter, union = (a & b).sum(1).float(), (a | b).sum(1).float()
    iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
    return {"metric": "min mask IoU", "value": round(float(iou.min()), 5), "min": MASK_IOU_MIN,
            "fp32_foreground_share": round(float(a.float().mean()), 4), "pass": float(iou.min()) >= MASK_IOU_MIN}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}), {torch.get_num_threads()} thread(s)"


def write_result(subproject: str, models: list[dict], settings: Settings, out: Path) -> None:
    """This subproject's JSON, written atomically."""
    result = {"subproject": subproject, "device": device_name(settings.device), "torch": torch.__version__,
              "tiny": settings.tiny, "timing": "wall" if settings.on_gpu else "process CPU time",
              "fp32": "TF32 off: full float32 products" if settings.on_gpu else "float32",
              "budget_s": settings.budget_s, "seconds": round(time.monotonic() - settings.started, 1),
              "models": models}
    write_text_atomic(out, json.dumps(result, indent=1))

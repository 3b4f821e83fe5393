"""Writes fixtures/original_outputs.pt by running the ORIGINAL CLIP4IDC code on parity_weights.py's weights and inputs.

Not part of the test suite and never run on our own model. Usage, from clip4idc/ (needs a clone of the original):

    git clone https://github.com/sushizixin/CLIP4IDC /tmp/clip4idc-original   # HEAD ca49461
    PYTHONPATH=tests python tests/make_parity_fixture.py --original /tmp/clip4idc-original \\
        --out tests/fixtures/original_outputs.pt

It copies the model files, ``metrics.py`` and the two task scripts out of the commit into a temporary directory and
imports them with these changes only, none inside the model code:
- ``boto3``/``botocore`` (imported by ``modules/file_utils.py`` for S3 downloads, unused here) are stubbed if missing;
- the model is built by the original's ``CLIP4IDC.from_pretrained`` from a CLIP state dict saved as a plain
  ``torch.save`` file (its ``get_config`` falls back to ``torch.load`` when ``torch.jit.load`` refuses it) and the
  decoder sizes of ``DECODER_CONFIG`` written as ``modules/decoder-parity/decoder_config.json``;
- for the fp32 path the model is cast with ``.float()`` after ``from_pretrained`` (which stores CLIP in fp16) and the
  state dict is loaded again, strictly; the fp16 outputs and the dtype of every state-dict entry are recorded from the
  model as ``from_pretrained`` left it;
- ``prep_optimizer``, ``train_epoch``, ``greedy_decode`` and the freezing block of ``main`` are taken out of the
  scripts with ``ast`` and run as written; ``prep_optimizer``'s DistributedDataParallel wrapper is replaced by a
  module that only holds ``.module`` and records the losses (one CPU process), and training runs in a one-process
  gloo group because the retrieval loss calls ``all_gather`` and ``barrier``.

The same outputs are then recorded a second time in float64 (the machine-independent reference the tests compare
ours against at 1e-9), from a second copy of the files in which the original's spellings of "full precision" are
rewritten to float64 and nothing else: ``.float()`` -> ``.double()``, ``torch.float32`` and ``dtype=torch.float``
-> ``torch.float64`` (its LayerNorm computes in ``torch.float32`` and its feature getters return ``.float()``,
which would round float64 activations to float32); the model is cast with ``.double()`` instead of ``.float()``.
The script prints each rewritten line.
"""
from __future__ import annotations

import argparse
import ast
import json
import logging
import re
import shutil
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from parity_weights import (CLIP_CONFIG, DECODER_CONFIG, INTRA_LAYERS, MAX_WORDS, SENTENCES, SOT, TRAIN, VOCAB,
                            LossRecorder, deterministic_state_dict, parity_inputs, retrieval_similarities,
                            training_batch)

COMMIT = "ca49461"
FILES = ("modules/__init__.py", "modules/until_module.py", "modules/until_config.py", "modules/file_utils.py",
         "modules/module_clip.py", "modules/module_cross.py", "modules/module_decoder.py", "modules/modeling.py",
         "modules/optimization.py", "modules/tokenization_clip.py", "modules/cross-base/cross_config.json",
         "metrics.py", "main_task_retrieval.py", "main_task_caption.py")
BPE_VOCAB = "modules/bpe_simple_vocab_16e6.txt.gz"
FREEZE_CASES = (("retrieval", "clevr", 0), ("retrieval", "spot", 2), ("caption", "spot", 0), ("caption", "clevr", 1))


# The original's ways of asking for full (float32) precision, and their float64 spelling.
FLOAT64_REWRITES = ((re.compile(r"\.float\(\)"), ".double()"), (re.compile(r"torch\.float32\b"), "torch.float64"),
                    (re.compile(r"dtype=torch\.float\)"), "dtype=torch.float64)"))


def in_float64(name: str, text: str) -> str:
    """``text`` with FLOAT64_REWRITES applied to its code lines; prints each line it changes."""
    lines = text.splitlines(keepends=True)
    for number, line in enumerate(lines):
        new = line
        for pattern, replacement in FLOAT64_REWRITES:
            new = pattern.sub(replacement, new)
        if new != line:
            print(f"float64 copy, {name}:{number + 1}: {line.strip()}  ->  {new.strip()}")
            lines[number] = new
    return "".join(lines)


def copy_original(repo: Path, workdir: Path, float64: bool = False) -> None:
    for name in FILES:
        text = subprocess.run(["git", "-C", str(repo), "show", f"{COMMIT}:{name}"], check=True, capture_output=True,
                              text=True).stdout
        if float64 and name.endswith(".py"):
            text = in_float64(name, text)
        (workdir / name).parent.mkdir(parents=True, exist_ok=True)
        (workdir / name).write_text(text)
    (workdir / BPE_VOCAB).write_bytes(subprocess.run(["git", "-C", str(repo), "show", f"{COMMIT}:{BPE_VOCAB}"],
                                                     check=True, capture_output=True).stdout)
    config = workdir / "modules" / "decoder-parity" / "decoder_config.json"
    config.parent.mkdir()
    config.write_text(json.dumps(DECODER_CONFIG))
    for missing in ("boto3", "botocore", "botocore.exceptions"):
        try:
            __import__(missing)
        except ImportError:
            stub = types.ModuleType(missing)
            stub.ClientError = type("ClientError", (Exception,), {})
            sys.modules[missing] = stub
    sys.path.insert(0, str(workdir))


def script_functions(path: Path, names: tuple[str, ...], namespace: dict) -> dict:
    """The named top-level functions of a script, executed in ``namespace`` (the script itself is not imported)."""
    tree = ast.parse(path.read_text())
    nodes = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in names]
    exec(compile(ast.Module(body=nodes, type_ignores=[]), str(path), "exec"), namespace)
    return {name: namespace[name] for name in names}


def freeze_block(path: Path) -> types.CodeType:
    """The ``if ... freeze_layer_num > -1:`` statement of the script's ``main``."""
    tree = ast.parse(path.read_text())
    main = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")
    block = next(n for n in main.body if isinstance(n, ast.If) and "freeze_layer_num > -1" in ast.unparse(n.test))
    return compile(ast.Module(body=[block], type_ignores=[]), str(path), "exec")


def original_state_shapes() -> dict[str, torch.Tensor]:
    """The original captioning model's state dict (keys, shapes), built from a CLIP state dict holding only the
    tensors its constructor reads the tower sizes from."""
    from modules.modeling import CLIP4IDC
    from modules.module_cross import CrossConfig
    from modules.module_decoder import DecoderConfig
    c = argparse.Namespace(**CLIP_CONFIG)
    grid = c.image_resolution // c.vision_patch_size
    shapes = {"visual.proj": (c.vision_width, c.embed_dim),
              "visual.positional_embedding": (grid ** 2 + 1, c.vision_width),
              "visual.conv1.weight": (c.vision_width, 3, c.vision_patch_size, c.vision_patch_size),
              "text_projection": (c.transformer_width, c.embed_dim), "ln_final.weight": (c.transformer_width,),
              "positional_embedding": (c.context_length, c.transformer_width),
              "token_embedding.weight": (c.vocab_size, c.transformer_width)}
    shapes.update({f"visual.transformer.resblocks.{i}.attn.in_proj_weight": (3 * c.vision_width, c.vision_width)
                   for i in range(c.vision_layers)})
    shapes.update({f"transformer.resblocks.{i}.attn.in_proj_weight": (3 * c.transformer_width, c.transformer_width)
                   for i in range(c.transformer_layers)})
    config = task_config("caption", Path("unused"))
    cross_config, _ = CrossConfig.get_config("cross-base", None, 2, state_dict=None, task_config=config)
    decoder_config, _ = DecoderConfig.get_config("decoder-parity", None, 2, state_dict=None, task_config=config)
    model = CLIP4IDC(cross_config, decoder_config, {k: torch.empty(v) for k, v in shapes.items()}, config)
    return model.state_dict()


def task_config(task_type: str, clip_path: Path, linear_patch: str = "2d", datatype: str = "clevr",
                freeze_layer_num: int = -1) -> argparse.Namespace:
    return argparse.Namespace(task_type=task_type, datatype=datatype, intra_num_hidden_layers=INTRA_LAYERS,
                              linear_patch=linear_patch, pretrained_clip_name=str(clip_path), local_rank=0, rank=0,
                              world_size=1, lr=TRAIN["lr"], warmup_proportion=TRAIN["warmup_proportion"],
                              n_display=1, epochs=1, gradient_accumulation_steps=1, max_words=MAX_WORDS,
                              freeze_layer_num=freeze_layer_num)


def build(task: str, state: dict[str, torch.Tensor], clip_path: Path, dtype: torch.dtype | None = torch.float32,
          **config) -> nn.Module:
    """The original's model; ``dtype`` None leaves it as ``from_pretrained`` does (CLIP weights stored in fp16)."""
    from modules.modeling import CLIP4IDC
    model = CLIP4IDC.from_pretrained("cross-base", "decoder-parity", state_dict=dict(state),
                                     task_config=task_config(task, clip_path, **config))
    if dtype is not None:
        model.to(dtype)
        model.load_state_dict(state, strict=True)
    return model.eval()


def to_python(metrics: dict) -> dict:
    return {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in metrics.items()}


def clip_only(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The stage-1 (retrieval) model's part of a captioning state dict."""
    return {k: v for k, v in state.items() if k.startswith("clip.")}


def features(model, inputs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(pooled text, pooled pair, text tokens, visual tokens) as the original's evaluation asks for them."""
    pair = torch.cat([inputs["bef_image"], inputs["aft_image"]], 1)
    return model.get_sequence_visual_output(inputs["input_ids"], inputs["segment_ids"], inputs["input_mask"], pair,
                                            inputs["image_mask"])


def similarity(model, inputs, text, visual) -> torch.Tensor:
    sim, *_ = model.get_similarity_logits(text, visual, inputs["input_mask"], inputs["image_mask"])
    return sim


def caption_logprobs(model, inputs) -> torch.Tensor:
    *_, visual_tokens = features(model, inputs)
    captions = inputs["input_caption_ids"].view(-1, MAX_WORDS)
    masks = inputs["decoder_mask"].view(-1, MAX_WORDS)
    encoder_mask = torch.ones(visual_tokens.shape[:2], dtype=torch.long)
    logits = model.decoder_caption(visual_tokens, encoder_mask, captions, masks, shaped=True, get_logits=True)
    return torch.log_softmax(logits, -1)


def greedy(model, inputs, scripts) -> torch.Tensor:
    """The original's greedy_decode over the pairs, from start-of-text for ``max_words`` steps."""
    pair = torch.cat([inputs["bef_image"], inputs["aft_image"]], 1)
    tokenizer = types.SimpleNamespace(vocab={"<|startoftext|>": SOT})
    return torch.tensor(scripts["greedy_decode"](argparse.Namespace(max_words=MAX_WORDS), model, tokenizer,
                                                 inputs["input_ids"], inputs["segment_ids"], inputs["input_mask"],
                                                 pair, inputs["image_mask"]))


@torch.no_grad()
def retrieval_outputs(state, clip_path, inputs, scripts, dtype: torch.dtype) -> dict:
    model = build("retrieval", state, clip_path, dtype)
    text, visual, text_tokens, visual_tokens = features(model, inputs)
    out = {"similarity": similarity(model, inputs, text, visual), "text_pooled": text, "visual_pooled": visual,
           "text_tokens": text_tokens, "visual_tokens": visual_tokens}
    with torch.enable_grad():
        out.update(train(build("retrieval", state, clip_path, dtype), inputs, "retrieval", scripts))
    model = out.pop("model")
    text, visual, _, _ = features(model, inputs)
    out["trained_similarity"] = similarity(model, inputs, text, visual)
    return out


@torch.no_grad()
def caption_outputs(state, clip_path, inputs, scripts, dtype: torch.dtype) -> dict:
    out = {"logprobs": caption_logprobs(build("caption", state, clip_path, dtype), inputs)}
    out["greedy"] = greedy(build("caption", state, clip_path, dtype), inputs, scripts)
    out["eval_cross_entropy"] = nn.CrossEntropyLoss(ignore_index=0)(out["logprobs"].view(-1, VOCAB),
                                                                    inputs["output_caption_ids"].view(-1))
    with torch.enable_grad():
        out.update(train(build("caption", state, clip_path, dtype), inputs, "caption", scripts))
    model = out.pop("model")
    out["trained_logprobs"] = caption_logprobs(model, inputs)
    out["trained_greedy"] = greedy(model, inputs, scripts)
    return out


def train(model, inputs, task, scripts) -> dict:
    """TRAIN["steps"] updates through the original's prep_optimizer and train_epoch (CLEVR layout for captioning)."""
    args = task_config(task, Path("unused"))
    optimizer, _, wrapped = scripts[task]["prep_optimizer"](args, model, TRAIN["t_total"], torch.device("cpu"), 1, 0,
                                                            coef_lr=TRAIN["coef_lr"])
    batches = [training_batch(inputs, task)] * TRAIN["steps"]
    torch.manual_seed(TRAIN["seed"])
    mean_loss, _ = scripts[task]["train_epoch"](0, args, wrapped, batches, torch.device("cpu"), 1, optimizer, None, 0)
    return {"model": wrapped.module.eval(), "train_losses": torch.tensor(wrapped.losses, dtype=torch.float64),
            "train_mean_loss": mean_loss, "trained_logit_scale": wrapped.module.clip.logit_scale.detach().clone()}


def frozen_names(state, clip_path, scripts_dir: Path) -> dict:
    out = {}
    blocks = {task: freeze_block(scripts_dir / f"main_task_{task}.py") for task in ("retrieval", "caption")}
    for task, datatype, layers in FREEZE_CASES:
        model = build(task, state if task == "caption" else clip_only(state), clip_path, datatype=datatype)
        args = task_config(task, clip_path, datatype=datatype, freeze_layer_num=layers)
        exec(blocks[task], {"model": model, "args": args, "print": lambda *a: None})
        out[f"{task}_{datatype}_{layers}"] = [n for n, p in model.clip.named_parameters() if not p.requires_grad]
    return out


@torch.no_grad()
def fp16_outputs(state, clip_path, inputs) -> dict:
    """Similarities and log-probs with CLIP stored in fp16 as ``from_pretrained`` leaves it, and each entry's dtype."""
    retrieval = build("retrieval", clip_only(state), clip_path, dtype=None)
    caption = build("caption", state, clip_path, dtype=None)
    text, visual, _, _ = features(retrieval, inputs)
    return {"similarity": similarity(retrieval, inputs, text, visual), "logprobs": caption_logprobs(caption, inputs),
            "retrieval_dtypes": {k: v.dtype for k, v in retrieval.state_dict().items()},
            "caption_dtypes": {k: v.dtype for k, v in caption.state_dict().items()}}


def patch3d_outputs(state, clip_path, inputs, dtype: torch.dtype) -> dict:
    """linear_patch 3d from a state without conv2: from_pretrained inflates conv1 into conv2's centre tap."""
    model = build("retrieval", clip_only(state), clip_path, dtype=None, linear_patch="3d").to(dtype)
    with torch.no_grad():
        _, visual, _, visual_tokens = features(model, inputs)
    return {"visual_pooled": visual, "visual_tokens_sum": visual_tokens.sum(-1)}


def metric_outputs() -> dict:
    import metrics
    square, grouped = retrieval_similarities()
    pair_to_text = metrics.tensor_video_to_text_sim(grouped.clone()).numpy()
    return {"square": to_python(metrics.compute_metrics(square.numpy())),
            "text_to_pair": to_python(metrics.tensor_text_to_video_metrics(grouped)),
            "pair_to_text": to_python(metrics.compute_metrics(pair_to_text))}


def tokenizer_outputs() -> dict:
    from modules.tokenization_clip import SimpleTokenizer
    tokenizer = SimpleTokenizer()
    ids = [tokenizer.encode(s) for s in SENTENCES]
    return {"tokens": [tokenizer.tokenize(s) for s in SENTENCES], "ids": ids,
            "decoded": [tokenizer.convert_ids_to_tokens(i) for i in ids],
            "special": [tokenizer.vocab["<|startoftext|>"], tokenizer.vocab["<|endoftext|>"], len(tokenizer.vocab)]}


def load_scripts(workdir: Path) -> dict:
    """The original scripts' functions this fixture runs, from the copy in ``workdir`` (already on sys.path)."""
    from modules.optimization import BertAdam
    fake_torch = types.SimpleNamespace(nn=types.SimpleNamespace(parallel=types.SimpleNamespace(
        DistributedDataParallel=lambda model, **kwargs: LossRecorder(model))))
    scripts = {}
    for task in ("retrieval", "caption"):
        script = workdir / f"main_task_{task}.py"
        scripts[task] = {
            **script_functions(script, ("prep_optimizer",), {"BertAdam": BertAdam, "torch": fake_torch}),
            **script_functions(script, ("train_epoch",), {"torch": torch, "np": np, "time": time,
                                                          "logger": logging.getLogger("original")})}
    scripts["greedy_decode"] = script_functions(workdir / "main_task_caption.py", ("greedy_decode",),
                                                {"torch": torch})["greedy_decode"]
    return scripts


def forget_original(workdir: Path) -> None:
    """Unimport the copy in ``workdir`` so that the next copy's ``modules`` package is imported afresh."""
    sys.path.remove(str(workdir))
    for name in [n for n in sys.modules if n == "modules" or n.startswith("modules.") or n == "metrics"]:
        del sys.modules[name]


def record(repo: Path, dtype: torch.dtype, state: dict[str, torch.Tensor], inputs: dict) -> dict:
    """Everything the original computes at ``dtype`` (float32: the commit as is; float64: FLOAT64_REWRITES)."""
    workdir = Path(tempfile.mkdtemp())
    try:
        copy_original(repo, workdir, float64=dtype == torch.float64)
        scripts = load_scripts(workdir)
        clip_path = workdir / "clip_parity.pt"
        torch.save({k[len("clip."):]: v for k, v in clip_only(state).items()}, clip_path)
        out = {"retrieval": retrieval_outputs(clip_only(state), clip_path, inputs, scripts, dtype),
               "caption": caption_outputs(state, clip_path, inputs, scripts, dtype),
               "patch3d": patch3d_outputs(state, clip_path, inputs, dtype)}
        if dtype == torch.float32:
            out.update(retrieval_keys=list(build("retrieval", clip_only(state), clip_path).state_dict()),
                       caption_keys=list(state), fp16=fp16_outputs(state, clip_path, inputs),
                       frozen=frozen_names(state, clip_path, workdir), metrics=metric_outputs(),
                       tokenizer=tokenizer_outputs())
        return out
    finally:
        forget_original(workdir)
        shutil.rmtree(workdir)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--original", required=True, type=Path, help="git checkout of sushizixin/CLIP4IDC")
    p.add_argument("--out", required=True, type=Path)
    args = p.parse_args()
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.ERROR)
    scratch = Path(tempfile.mkdtemp())
    try:
        copy_original(args.original, scratch)
        state = deterministic_state_dict(original_state_shapes())
        forget_original(scratch)
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
        inputs = parity_inputs()
        float32 = record(args.original, torch.float32, state, inputs)
        out = {"commit": COMMIT, **{k: float32.pop(k) for k in ("retrieval_keys", "caption_keys", "fp16", "frozen",
                                                                 "metrics", "tokenizer")},
               "float32": float32, "float64": record(args.original, torch.float64, state, inputs)}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        torch.save(out, args.out)
        print(f"wrote {args.out}")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
        shutil.rmtree(scratch)


if __name__ == "__main__":
    main()

"""Configuration: configs/cfg.yaml (GIN) or another YAML file, configs/ds_info.json, and typed ``--key=value`` overrides.

Overrides follow the original's rule (yacs ``update_from_dict``): the key must already exist (dotted keys walk nested
sections), the value is decoded as a Python literal, and its type must equal the existing value's type. Unlike the
original, an int is accepted for a float key (``--lr=1`` failed there) and true/false may be lower case.
"""
from __future__ import annotations

import ast
import copy
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from errors import ConfigError

GIN_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = GIN_DIR.parent
DEFAULT_CFG = GIN_DIR / "configs" / "cfg.yaml"
DS_INFO = GIN_DIR / "configs" / "ds_info.json"
KEY_LINE = re.compile(r"^(\w+):\s*([^#]*?)\s*(?:#\s*(.*))?$")
CONTINUED_COMMENT = re.compile(r"^\s+#\s*(.*)$")


def describe_keys(path: str | Path = DEFAULT_CFG) -> str:
    """One line per top-level key of a config file: ``--key=default  its comment`` (comments continued on indented
    comment lines are joined), for ``--help``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found (use configs/cfg.yaml for GIN or configs/zsgnet.yaml)")
    rows: list[list[str]] = []
    for line in path.read_text().splitlines():
        key_line, continued = KEY_LINE.match(line), CONTINUED_COMMENT.match(line)
        if key_line:
            key, value, comment = key_line.groups()
            rows.append([f"--{key}={value}" if value else f"--{key}.<key>=...", comment or ""])
        elif continued and rows:
            rows[-1][1] = f"{rows[-1][1]} {continued.group(1)}".strip()
    width = max(len(flag) for flag, _ in rows)
    return "\n".join(f"  {flag.ljust(width)}  {comment}".rstrip() for flag, comment in rows)


def load_config(path: str | Path = DEFAULT_CFG) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found (use configs/cfg.yaml for GIN or configs/zsgnet.yaml)")
    with path.open() as f:
        cfg = yaml.safe_load(f)
    with DS_INFO.open() as f:
        cfg["ds_info"] = json.load(f)
    return cfg


def decode_value(text: Any) -> Any:
    """A command-line value as a Python literal (int, float, bool, list, ...), else the string itself."""
    if not isinstance(text, str):
        return text
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _same_type(new: Any, old: Any) -> bool:
    if isinstance(old, bool) or isinstance(new, bool):
        return type(new) is type(old)
    if isinstance(old, float):
        return isinstance(new, (int, float))
    if isinstance(old, (list, tuple)):
        return isinstance(new, (list, tuple))
    return isinstance(new, type(old))


def merge_overrides(cfg: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``cfg`` with each dotted ``key=value`` applied; unknown keys and type changes raise ConfigError."""
    cfg = copy.deepcopy(cfg)
    for full_key, raw in overrides.items():
        node = cfg
        parts = full_key.split(".")
        for depth, part in enumerate(parts):
            if not isinstance(node, dict) or part not in node:
                where = ".".join(parts[:depth]) or "the config"
                valid = ", ".join(sorted(node)) if isinstance(node, dict) else "(not a section)"
                raise ConfigError(f"unknown config key --{full_key}: {where} has no key {part!r}; valid keys: {valid}")
            if depth < len(parts) - 1:
                node = node[part]
        old, new = node[parts[-1]], decode_value(raw)
        if not _same_type(new, old):
            raise ConfigError(f"--{full_key}={raw!r} has type {type(new).__name__}, but the key holds a "
                              f"{type(old).__name__} (default {old!r})")
        node[parts[-1]] = float(new) if isinstance(old, float) else new
    return cfg


def parse_argv(argv: list[str]) -> tuple[str, dict[str, str]]:
    """``UID --key=value --key value ...`` -> (uid, {key: value}); '-' in a flag name is read as '_'."""
    uid, overrides, i = None, {}, 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--"):
            key, eq, value = arg[2:].partition("=")
            if not eq:
                if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                    value, i = argv[i + 1], i + 1
                else:
                    value = "True"
            overrides[key.replace("-", "_") if "." not in key else key] = value
        elif uid is None:
            uid = arg
        else:
            raise ConfigError(f"unexpected positional argument {arg!r}; usage: main_dist.py UID --key=value ...")
        i += 1
    if uid is None:
        raise ConfigError("missing experiment name; usage: python code/main_dist.py UID --key=value ...")
    return uid, overrides


def resolve_path(path: str | Path) -> Path:
    """Paths in ds_info and pretrained_path are relative to the repository root (absolute ones are kept)."""
    path = Path(path)
    return path if path.is_absolute() else REPO_ROOT / path


def anchor_ratios_scales(cfg: dict[str, Any]) -> tuple[list[float], list[float]]:
    """Ratios and scales from the config; strings such as "[1, 2**(1/3)]" are evaluated like the original did."""
    ratios = cfg["ratios"] if isinstance(cfg["ratios"], list) else eval(cfg["ratios"], {})  # noqa: S307 (config arithmetic)
    scales = cfg["scales"] if isinstance(cfg["scales"], list) else eval(cfg["scales"], {})  # noqa: S307
    return [float(r) for r in ratios], [float(s) for s in cfg["scale_factor"] * np.array(scales)]


def validate(cfg: dict[str, Any]) -> None:
    """Reject settings the model cannot run, naming the key and the fix."""
    if cfg["arch"] not in ("gin", "zsgnet"):
        raise ConfigError(f"--arch={cfg['arch']!r}: use gin or zsgnet")
    if cfg["mdl_to_use"] != "retina":
        raise ConfigError(f"--mdl_to_use={cfg['mdl_to_use']!r} is not provided (ssd_vgg was broken in GIN); use retina")
    if not (cfg["use_lang"] and cfg["use_img"]):
        raise ConfigError("--use_lang=False / --use_img=False ablations are not provided (broken in the original GIN)")
    if cfg["ds_to_use"] not in cfg["ds_info"]:
        raise ConfigError(f"--ds_to_use={cfg['ds_to_use']!r} is not in configs/ds_info.json; "
                          f"valid: {', '.join(cfg['ds_info'])}")
    w, h = cfg["resize_img"]
    if w != h:
        raise ConfigError(f"--resize_img={cfg['resize_img']}: width and height must be equal (GARAN assumes square maps)")
    if cfg["arch"] == "gin" and w % 32:
        raise ConfigError(f"--resize_img={cfg['resize_img']}: GIN needs a multiple of 32 (e.g. 320, 512, 608)")
    if cfg["use_softmax"] and cfg["use_multi"]:
        raise ConfigError("--use_softmax=True needs --use_multi=False")
    if cfg["sched_mode"] not in ("min", "max"):
        raise ConfigError(f"--sched_mode={cfg['sched_mode']!r}: use min (original) or max")
    if cfg["word_vectors"] not in ("en_core_web_md", "hash"):
        raise ConfigError(f"--word_vectors={cfg['word_vectors']!r}: use en_core_web_md or hash")


RESIZE_FILTERS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")


def validate_extras(cfg: dict[str, Any]) -> None:
    """Checks of the keys this re-implementation adds."""
    if cfg["resize_filter"] not in RESIZE_FILTERS:
        raise ConfigError(f"--resize_filter={cfg['resize_filter']!r}: use one of {', '.join(RESIZE_FILTERS)}")
    if cfg["lstm_init"] not in ("random", "zeros"):
        raise ConfigError(f"--lstm_init={cfg['lstm_init']!r}: use random (original) or zeros")
    if cfg["device"] not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"--device={cfg['device']!r}: use auto, cpu or cuda")

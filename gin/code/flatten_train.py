"""train.csv (one row per object, a list of phrases) -> train_flat.csv (one row per phrase); the original's
data/flatten_train.py, which ds_info expects to have been run.

    python code/flatten_train.py csv_dir/train.csv csv_dir/train_flat.csv
"""
from __future__ import annotations

import ast
import sys

import pandas as pd


def flatten(inp_csv: str, out_csv: str) -> None:
    df = pd.read_csv(inp_csv)
    df["query"] = df["query"].apply(ast.literal_eval)
    df.explode("query").to_csv(out_csv, index=False, header=True)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: flatten_train.py train.csv train_flat.csv")
    flatten(sys.argv[1], sys.argv[2])

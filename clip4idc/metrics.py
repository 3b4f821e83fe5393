"""Retrieval metrics: R@1/5/10, median and mean rank, in both directions, over multi-sentence pairs."""
from __future__ import annotations

import numpy as np
import torch


def compute_metrics(x: np.ndarray) -> dict[str, float]:
    """Ranks of the diagonal of a square similarity matrix (rows are queries)."""
    sx = np.sort(-x, axis=1)
    d = np.diag(-x)[:, None]
    ind = np.where(sx - d == 0)[1]
    return {
        "R1": float(np.sum(ind == 0)) * 100 / len(ind),
        "R5": float(np.sum(ind < 5)) * 100 / len(ind),
        "R10": float(np.sum(ind < 10)) * 100 / len(ind),
        "MR": float(np.median(ind)) + 1,
        "MeanR": float(np.mean(ind)) + 1,
    }


def text_to_pair_metrics(sim: np.ndarray, top_k=(1, 5, 10)) -> dict[str, float]:
    """``sim`` [pairs, max_sentences, pairs] padded with -inf: rank of the true pair for every real sentence."""
    sim_t = torch.as_tensor(sim)
    stacked = sim_t.permute(1, 0, 2)
    ranks = torch.argsort(torch.argsort(stacked, dim=-1, descending=True), dim=-1)
    ranks = torch.diagonal(ranks, dim1=1, dim2=2).flatten()
    true_scores = torch.diagonal(sim_t, dim1=0, dim2=2).flatten()
    valid = ranks[~(torch.isinf(true_scores) | torch.isnan(true_scores))]
    out = {f"R{k}": float((valid < k).sum() * 100 / len(valid)) for k in top_k}
    out["MR"] = float(torch.median(valid + 1))
    out["MeanR"] = float(np.mean(valid.numpy() + 1))
    return out


def pair_to_text_sim(sim: np.ndarray) -> np.ndarray:
    """[pairs, pairs]: for each pair (column) the best-scoring sentence of every pair's group."""
    sim_t = torch.as_tensor(sim).clone()
    sim_t[sim_t != sim_t] = float("-inf")
    return torch.max(sim_t, dim=1).values.T.numpy()


def group_similarity(sim: np.ndarray, cut_off_points: list[int]) -> np.ndarray:
    """[sentences, pairs] -> [pairs, max_sentences, pairs], each pair's sentences in a row block, -inf padded."""
    starts = [0] + cut_off_points[:-1]
    longest = max(e - s for s, e in zip(starts, cut_off_points))
    blocks = [np.concatenate([sim[s:e], np.full((longest - e + s, sim.shape[1]), -np.inf)]) for s, e in
              zip(starts, cut_off_points)]
    return np.stack(blocks)

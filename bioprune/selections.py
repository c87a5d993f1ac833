"""Coreset selection from self-influence scores: Top-I, CCI and baselines (random, 10x random, GraNd, clusters).

Budgets are fractions of the scored pool. Every strategy returns ids in a deterministic order.
"""
from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from .errors import BiopruneError
from .h5io import atomic_h5, atomic_path, open_h5, read_str, write_str

log = logging.getLogger(__name__)
STRATEGIES = ("top_influence", "cci", "random", "random_10x", "grad_norm", "cluster")


def budget_size(n: int, budget: float, strategy: str = "") -> int:
    """Number of sequences for a budget fraction; a budget of 0, above 1, or under one sequence is an error."""
    if not 0 < budget <= 1:
        raise BiopruneError(f"config key selection.budgets: {budget} must be in (0, 1]")
    k = int(round(budget * n))
    if strategy == "random_10x":
        k *= 10
    if k < 1:
        raise BiopruneError(f"config key selection.budgets: {budget} of a pool of {n} is less than one sequence")
    if k > n:
        raise BiopruneError(
            f"config key selection.budgets: {strategy or 'budget'} {budget} asks for {k} sequences "
            f"but the pool holds {n}"
        )
    return k


def top_k(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values, ties broken by position (stable)."""
    return np.argsort(-values, kind="stable")[:k]


def cci_bins(scores: np.ndarray, beta: float, n_bins: int, edge: str = "inclusive") -> tuple[np.ndarray, np.ndarray]:
    """Drop the beta fraction with the highest scores; assign the rest to equal-width score bins.

    Returns (kept indices, bin of each kept index; -1 = outside every bin). `edge='official'`
    reproduces bio-coreset's upper edge max*1.0001 on the negated scores, which leaves the most
    extreme retained sample out of every bin; `inclusive` (default) puts the maximum in the last bin.
    """
    n = len(scores)
    order = np.argsort(-scores, kind="stable")
    kept = np.sort(order[int(np.floor(beta * n)):])
    if edge == "official":
        signed = -scores[kept]
        lo, hi = signed.min(), signed.max() * 1.0001
        edges = np.linspace(lo, hi, n_bins + 1)
        b = np.searchsorted(edges, signed, side="right") - 1
        b[(signed >= hi) | (b >= n_bins)] = -1
    elif edge == "inclusive":
        s = scores[kept]
        lo, hi = s.min(), s.max()
        if hi == lo:
            b = np.zeros(len(kept), dtype=int)
        else:
            b = np.minimum(((s - lo) / (hi - lo) * n_bins).astype(int), n_bins - 1)
    else:
        raise BiopruneError(f"config key selection.cci.bin_edge: {edge!r} is not inclusive or official")
    return kept, b


def cci_allocation(bin_sizes: np.ndarray, k: int) -> np.ndarray:
    """CCS budget rule: visit bins smallest first, each takes min(size, remaining // bins left)."""
    alloc = np.zeros(len(bin_sizes), dtype=int)
    remaining = k
    order = np.argsort(bin_sizes, kind="stable")
    for left, b in zip(range(len(order), 0, -1), order):
        take = min(int(bin_sizes[b]), remaining // left)
        alloc[b] = take
        remaining -= take
    return alloc


def select_cci(scores: np.ndarray, k: int, beta: float, n_bins: int, seed: int, edge: str = "inclusive") -> np.ndarray:
    """Coverage-Centric Influence: stratified sampling over the influence-score distribution."""
    kept, b = cci_bins(scores, beta, n_bins, edge)
    if (b >= 0).sum() < k:
        raise BiopruneError(
            f"CCI: budget of {k} exceeds the {(b >= 0).sum()} sequences left after dropping selection.cci.beta={beta}"
        )
    sizes = np.bincount(b[b >= 0], minlength=n_bins)
    alloc = cci_allocation(sizes, k)
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(kept[b == j], size=alloc[j], replace=False) for j in range(n_bins) if alloc[j]]
    return np.sort(np.concatenate(chosen)) if chosen else np.array([], dtype=int)


def select(strategy: str, scores: dict, budget: float, seed: int, cci: dict | None = None,
           representatives: list[str] | None = None) -> list[str]:
    """Ids chosen by `strategy` at `budget` (fraction of the pool) with `seed`."""
    ids = scores["id"]
    n = len(ids)
    k = budget_size(n, budget, strategy)
    rng = np.random.default_rng(seed)
    if strategy == "top_influence":
        idx = top_k(scores["score"], k)
    elif strategy == "grad_norm":
        idx = top_k(scores["grad_sqnorm"], k)
    elif strategy in ("random", "random_10x"):
        idx = np.sort(rng.choice(n, size=k, replace=False))
    elif strategy == "cci":
        cci = cci or {}
        idx = select_cci(scores["score"], k, cci.get("beta", 0.1), cci.get("bins", 50), seed,
                         cci.get("bin_edge", "inclusive"))
    elif strategy == "cluster":
        if representatives is None:
            raise BiopruneError("strategy cluster needs the MMseqs2 representatives file")
        pos = {i: j for j, i in enumerate(ids)}
        reps = np.array(sorted(pos[r] for r in representatives if r in pos))
        if len(reps) < k:
            raise BiopruneError(f"cluster: only {len(reps)} cluster representatives for a budget of {k}; "
                                "raise selection.cluster.identity")
        idx = np.sort(rng.choice(reps, size=k, replace=False))
    else:
        raise BiopruneError(f"config key selection.strategies: unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    return [ids[i] for i in idx]


def write_selection(path: str, fasta_path: str, chosen: list[str], sequences: dict[str, str], **attrs) -> None:
    """Write the selection HDF5 (dataset id) and a FASTA of the chosen sequences, atomically."""
    with atomic_h5(path, "selection", n=len(chosen), **attrs) as f:
        write_str(f, "id", chosen)
    with atomic_path(fasta_path) as tmp:
        with open(tmp, "w") as fh:
            for i in chosen:
                fh.write(f">{i}\n{sequences[i]}\n")


def read_selection(path: str) -> list[str]:
    with open_h5(path, "selection", ["id"]) as f:
        return read_str(f["id"])


def mmseqs_representatives(fasta: str, out_path: str, identity: float, coverage: float = 0.8, threads: int = 1) -> int:
    """Cluster with `mmseqs easy-linclust`; write one representative id per line. Returns the count."""
    exe = shutil.which("mmseqs")
    if exe is None:
        raise BiopruneError(
            "strategy 'cluster' needs MMseqs2, which is not on PATH: install it with "
            "`apt-get install mmseqs2` (Debian/Ubuntu) or `conda install -c bioconda mmseqs2`, "
            "or remove 'cluster' from selection.strategies"
        )
    with tempfile.TemporaryDirectory() as tmp:
        prefix = Path(tmp) / "clu"
        cmd = [exe, "easy-linclust", fasta, str(prefix), str(Path(tmp) / "work"), "--min-seq-id", str(identity),
               "-c", str(coverage), "--threads", str(threads), "-v", "1"]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise BiopruneError(f"mmseqs easy-linclust failed ({res.returncode}): {res.stderr[-2000:]}")
        reps = sorted({line.split("\t")[0] for line in open(f"{prefix}_cluster.tsv") if line.strip()})
    with atomic_path(out_path) as t:
        Path(t).write_text("".join(r + "\n" for r in reps))
    return len(reps)

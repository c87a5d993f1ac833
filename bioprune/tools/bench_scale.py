"""`bioprune bench-scale`: peak memory and records/s of the stages that need no model, at N and 10N.

Synthetic inputs (made in the parent, not measured): RNA FASTA of random 40-300 nt sequences with
2% exact duplicates (ingest); diag_fisher-style sketch files in `--shards` parts (merge); score
files with one `score` dataset (selection, read block by block as the select stage reads scores.h5;
budgets 1% and 10%, beta 0.1, 50 bins). Each measurement runs in its own child process (`python -m
bioprune.tools.bench_scale STAGE ...`) that reports its own peak RSS (/proc/self/status VmHWM) as JSON.
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ALPHABET = np.frombuffer(b"ACGU", dtype=np.uint8)


def make_fasta(path: Path, n: int, seed: int = 0, dup_fraction: float = 0.02) -> Path:
    """n records, lengths 40..300, about dup_fraction of them exact copies of earlier sequences."""
    rng = np.random.default_rng(seed)
    pool: list[bytes] = []
    with open(path, "wb") as fh:
        for a in range(0, n, 100_000):
            m = min(n, a + 100_000) - a
            lens = rng.integers(40, 301, m)
            letters = ALPHABET[rng.integers(0, 4, int(lens.sum()))].tobytes()
            ends = np.cumsum(lens)
            dup = rng.random(m) < dup_fraction
            out = []
            for j in range(m):
                s = letters[ends[j] - lens[j]:ends[j]]
                if dup[j] and pool:
                    s = pool[int(rng.integers(len(pool)))]
                elif len(pool) < 10_000:
                    pool.append(s)
                out.append(b">r%d synthetic\n%s\n" % (a + j, s))
            fh.write(b"".join(out))
    return path


def make_sketches(folder: Path, n: int, shards: int, seed: int = 0) -> list[str]:
    """diag_fisher-style sketch files (id, score, length, loss, grad_sqnorm, in_subset) of n sequences."""
    from bioprune.h5io import atomic_h5

    rng = np.random.default_rng(seed)
    paths, start = [], 0
    for s in range(shards):
        m = n // shards + (s < n % shards)
        p = folder / f"sk{s}.h5"
        with atomic_h5(p, "sketches", estimator="diag_fisher", damping=1e-3, normalize="none",
                       relative_damping=0.1, molecule="rna", params=["w"], source_shard=f"{s + 1}-of-{shards}") as f:
            f.create_dataset("id", data=np.array([b"r%d" % i for i in range(start, start + m)], dtype=object),
                             dtype=__import__("h5py").string_dtype())
            f.create_dataset("score", data=rng.lognormal(0, 1.5, m))
            f.create_dataset("length", data=rng.integers(40, 301, m).astype(np.int32))
            f.create_dataset("loss", data=rng.random(m))
            f.create_dataset("grad_sqnorm", data=rng.random(m))
            f.create_dataset("in_subset", data=rng.random(m) < 0.1)
        paths.append(str(p))
        start += m
    return paths


def make_scores(path: Path, n: int, seed: int = 0) -> Path:
    """A scores-like HDF5 file with one `score` dataset of n log-normal values (written in blocks)."""
    import h5py

    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("score", shape=(n,), dtype=np.float64, chunks=(min(n, 1 << 16),))
        for a in range(0, n, 1 << 22):
            ds[a:a + (1 << 22)] = rng.lognormal(0, 1.5, min(n, a + (1 << 22)) - a)
    return path


def _child(stage: str, args: list[str]) -> dict:
    """Run one measured stage in this process; return its numbers and this process's peak RSS."""
    out: dict = {"stage": stage}  # each branch starts its clock after its imports
    if stage == "ingest":
        from bioprune.ingest import IngestOptions, route_file, summarise
        from bioprune.ingest.pipeline import gather_shard

        fasta, folder, shards = args[0], Path(args[1]), int(args[2])
        part = str(folder / "part0.h5")
        t0 = time.perf_counter()
        route_file(fasta, part, 0, shards, IngestOptions(max_length=1024))
        t1 = time.perf_counter()
        outs = [str(folder / f"{i}-of-{shards}.h5") for i in range(1, shards + 2)]
        for d, o in enumerate(outs):
            gather_shard([part], o, d, shards)
        stats = summarise([part], outs[:-1], outs[-1])
        t2 = time.perf_counter()
        out.update(records=stats.records, kept=stats.kept, route_s=t1 - t0, gather_s=t2 - t1,
                   route_rec_per_s=stats.records / (t1 - t0), gather_rec_per_s=stats.records / (t2 - t1))
    elif stage == "route":  # one route job over byte range `index` of `count` (corpus.split_mb)
        from bioprune.ingest import IngestOptions, route_file
        from bioprune.ingest.ranges import file_spans

        fasta, count, index = args[0], int(args[3]), int(args[4])
        span = file_spans(fasta, -(-Path(fasta).stat().st_size // count))[index]
        t0 = time.perf_counter()
        stats = route_file(fasta, args[1], 0, int(args[2]), IngestOptions(max_length=1024), span)
        out.update(records=stats.records, span=span)
    elif stage == "merge":
        from bioprune.influence.scores import merge_scores

        t0 = time.perf_counter()
        res = merge_scores(args[1:], args[0])
        out.update(records=res["n"])
    elif stage == "select":
        import h5py

        from bioprune.selection.stream import Column
        from bioprune.selection.strategies import CCIOptions, select_indices

        path, strategy, budget = args[0], args[1], float(args[2])
        t0 = time.perf_counter()
        with h5py.File(path, "r") as f:  # read block by block, as the select stage reads scores.h5
            n = int(f["score"].shape[0])
            idx = select_indices(strategy, {"score": Column(f["score"], path)}, n, budget, 0,
                                 CCIOptions(beta=0.1, bins=50))
        out.update(records=n, chosen=len(idx))
    out["seconds"] = time.perf_counter() - t0
    out["rec_per_s"] = out["records"] / out["seconds"]
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM of /proc/self/status (of this program only; Linux keeps
    getrusage's ru_maxrss across exec, so a child started by a big parent would report the parent's
    peak), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(stage: str, *args: str) -> dict:
    """Run `_child(stage, args)` in a fresh interpreter and return its JSON report."""
    res = subprocess.run([sys.executable, "-m", "bioprune.tools.bench_scale", stage, *map(str, args)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"bench-scale {stage} failed: {res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def bench_scale(work: str, ingest_n: list[int], merge_n: list[int], select_n: list[int], shards: int = 8,
                strategies=("top_influence", "cci", "random"), budgets=(0.01, 0.1)) -> list[dict]:
    """All measurements, one row each (stage, N, peak RSS, records/s, ...)."""
    w = Path(work)
    w.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in ingest_n:
        d = w / f"ingest_{n}"
        d.mkdir(exist_ok=True)
        fasta = make_fasta(d / "pool.fa", n)
        rows.append({"n": n, **measure("ingest", fasta, d, shards)})
    for n in merge_n:
        d = w / f"merge_{n}"
        d.mkdir(exist_ok=True)
        rows.append({"n": n, **measure("merge", d / "scores.h5", *make_sketches(d, n, shards))})
    for n in select_n:
        path = make_scores(w / f"scores_{n}.h5", n)
        for budget in budgets:
            for strategy in strategies:
                rows.append({"n": n, "strategy": strategy, "budget": budget, **measure("select", path, strategy, budget)})
        path.unlink()
    return rows


if __name__ == "__main__":
    print(json.dumps(_child(sys.argv[1], sys.argv[2:])))

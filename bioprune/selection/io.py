"""Selection inputs and outputs at scale: the numeric columns of scores.h5 (no id list), ids of the
chosen positions, and the selection HDF5 + FASTA written streaming, block by block; MMseqs2 clusters.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

from bioprune.errors import BiopruneError
from bioprune.h5io import STR, atomic_h5, atomic_path, open_h5, read_str, write_str
from bioprune.selection.stream import Column

BLOCK = 1 << 16


@contextmanager
def score_columns(path: str, keys=("score", "length", "grad_sqnorm")):
    """(columns, pool size, attrs) of scores.h5 without its ids, the file open while the context
    lasts: each column a selection_stream.Column over the HDF5 dataset, read block by block."""
    with open_h5(path, "scores", ["id", "score", "length", "grad_sqnorm"]) as f:
        cols = {k: Column(f[k], f"{path}: dataset {k}") for k in keys if k in f}
        yield cols, int(f["id"].shape[0]), dict(f.attrs)


def _rows(ds: h5py.Dataset, rows: np.ndarray) -> list[bytes]:
    """Strings at sorted rows: one contiguous read when they are dense, else a point selection."""
    if not len(rows):
        return []
    lo, hi = int(rows[0]), int(rows[-1]) + 1
    if hi - lo <= 4 * len(rows) + 1024:
        return ds[lo:hi][rows - lo].tolist()
    return ds[rows].tolist()


def write_selection_streaming(path: str, fasta_path: str, scores_path: str, shards: list[str], idx: np.ndarray,
                              **attrs) -> None:
    """The selection HDF5 (ids in `idx` order) and its FASTA, block by block: position i of
    scores.h5 is row i of the shards concatenated in order (how the merge wrote it); each id read
    from a shard is checked against the scores' id, so mismatched shards are an error."""
    sizes = []
    for p in shards:
        with h5py.File(p, "r", locking=False) as f:
            sizes.append(int(f["id"].shape[0]))
    starts = np.concatenate([[0], np.cumsum(sizes)])
    files = [h5py.File(p, "r", locking=False) for p in shards]
    try:
        with atomic_path(fasta_path) as tmp_fa, open(tmp_fa, "wb") as fa, \
                atomic_h5(path, "selection", n=len(idx), **attrs) as out, \
                h5py.File(scores_path, "r", locking=False) as sc:
            if sizes and starts[-1] != sc["id"].shape[0]:
                raise BiopruneError(f"{scores_path}: scores {sc['id'].shape[0]} sequences, the shards hold "
                                    f"{int(starts[-1])}; re-run scoring")
            ids_out = out.create_dataset("id", shape=(len(idx),), dtype=STR)
            for a in range(0, len(idx), BLOCK):
                block = np.asarray(idx[a:a + BLOCK], dtype=np.int64)
                order = np.argsort(block, kind="stable")
                srt = block[order]
                want = _rows(sc["id"], srt)
                ids, seqs = [b""] * len(srt), [b""] * len(srt)
                shard_of = np.searchsorted(starts, srt, side="right") - 1
                for s in np.unique(shard_of):
                    sel = np.flatnonzero(shard_of == s)
                    rows = srt[sel] - starts[s]
                    for j, i, q in zip(sel.tolist(), _rows(files[s]["id"], rows), _rows(files[s]["sequence"], rows)):
                        ids[j], seqs[j] = i, q
                if ids != want:
                    bad = next(j for j in range(len(ids)) if ids[j] != want[j])
                    raise BiopruneError(f"{scores_path}: position {int(srt[bad])} is {want[bad]!r}, the shards hold "
                                        f"{ids[bad]!r} there; scores and shards do not match (re-run scoring)")
                back = np.empty_like(order)
                back[order] = np.arange(len(order))
                ids_out[a:a + len(block)] = np.array([ids[j] for j in back.tolist()], dtype=object)
                fa.write(b"".join(b">%s\n%s\n" % (ids[j], seqs[j]) for j in back.tolist()))
    finally:
        for f in files:
            f.close()


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


def mmseqs_representatives(fasta: str, out_path: str, identity: float, coverage: float = 0.8, threads: int = 1,
                           members_path: str | None = None) -> int:
    """Cluster with `mmseqs easy-linclust`; write one representative id per line (and, with members_path,
    its representative<TAB>member table). Returns the count."""
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
        if members_path:
            with atomic_path(members_path) as t:
                Path(t).write_text(Path(f"{prefix}_cluster.tsv").read_text())
    with atomic_path(out_path) as t:
        Path(t).write_text("".join(r + "\n" for r in reps))
    return len(reps)

"""Route-stage speed-up on a real (local, single-node) SLURM: one 3M-record FASTA as 1 vs 2 byte-range
jobs (docs/PERFORMANCE.md). Needs root, slurm-wlm and munge (`make sysdeps`); run from the repository
root with the project's venv: `PYTHONPATH=$PWD .venv/bin/python docs/bench/ingest_slurm_speedup.py`."""
import csv, json, math, subprocess, sys, time
from pathlib import Path
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from slurm_cluster import LocalSlurm
from bioprune.tools.bench_scale import make_fasta

w = Path("/tmp/sspeed"); w.mkdir(exist_ok=True)
fa = w / "pool.fa"
if not fa.exists():
    make_fasta(fa, 3_000_000)
size_mb = fa.stat().st_size / 2**20
half = int(math.ceil(size_mb / 2)) + 1
snakemake = str(ROOT / ".venv/bin/snakemake")
rows = []
with LocalSlurm(w / "slurm") as cl:
    for rep in range(2):
        for split in (0, half):
            d = w / f"run_{split}_{rep}"
            subprocess.run(["rm", "-rf", str(d)]); d.mkdir()
            cmd = [snakemake, "-s", str(ROOT / "Snakefile"), "--profile", str(ROOT / "profiles/slurm"),
                   "--configfile", str(ROOT / "config.yaml"), "--config",
                   f"corpus={{'path': '{fa}', 'molecule': 'rna', 'shards': 2, 'split_mb': {split}}}",
                   "--slurm-status-command", "squeue", "--slurm-no-account", "--jobs", "8", "--retries", "0",
                   "--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "1",
                   "results/shards/ingest.json"]
            t0 = time.time()
            r = subprocess.run(cmd, cwd=d, capture_output=True, text=True)
            wall = time.time() - t0
            if r.returncode:
                print(r.stdout[-3000:], r.stderr[-3000:]); sys.exit(1)
            def bench(pattern):
                return [float(next(csv.DictReader(open(p), delimiter="\t"))["s"]) for p in sorted((d / "results/benchmarks/ingest").glob(pattern))]
            rows.append({"split_mb": split, "rep": rep, "wall_s": round(wall, 1), "route_s": bench("route_*.tsv"),
                         "gather_s": bench("gather_*.tsv")})
            print(json.dumps(rows[-1]), flush=True)
print(f"file {size_mb:.0f} MB")

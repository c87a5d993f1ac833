"""Which scoring loss measures the sequence? The measurement behind influence.loss's default (issue 11).

For the bundled RNA and protein demo pools: ingest with the demo settings, train reference models
for reference.seed 0 and 1 (config.yaml's / experiments/protein_demo.yaml's reference section), and
score with the diag-Fisher estimator under each variant loss x reduction x normalize. Each variant
is scored three times: (influence seed 0, reference seed 0) = primary, (1, 0) and (0, 1). The
statistics are bioprune.influence.stability's: Spearman and mean within-length-decile Spearman between the
influence seeds, Jaccard of the top-0.5% sets, Spearman between the reference seeds, and
Spearman(score, length) of the primary scoring.

Cost control: the reference model and the curvature use the full pool's D_sub (as the demo), but
only a deterministic subsample of the pool is scored (`--n-score` per molecule, by id hash), and
normalize=rayleigh is computed from the same pass as score / grad_sqnorm (what scores.merge_scores
does with normalize: rayleigh), so each (loss, reduction) costs three curvature + sketch passes.

Ensemble axis (issue 27, --ensembles R.. --ensemble-normalize rank zscore none): reference seed s
scores with the R members bioprune.influence.ensemble.member_seeds(s, R) (member 0 = s, the single-model run),
each its own D_sub, reference model, curvature and sketch pass; their scores are averaged after the
per-model normalisation (bioprune.influence.ensemble.combine), then normalize (none / rayleigh) is applied to
each member before it (what the workflow does: the merge of a member applies influence.normalize).
The reference-seed statistics compare the ensemble of seed 0 with that of seed 1 (disjoint members).
For loss reconstruction (diag_fisher) the influence seed enters nothing (it draws only masks and
projections), so the influence-seed scoring is run for member 0 only and every other member's
influence-seed scores are its primary ones (exact, not an approximation); other losses score all.

Reference-training axis (--train eE:wW:fF ..): reference epochs E, embed_dim W and D_sub fraction F
(reference.epochs / embed_dim / subset_fraction; F also sets the curvature's D_sub). The molecule's
demo setting keeps the file names of the issue-11 study; other settings live under work/mol/train_<tag>.
Training seconds per model and scoring seconds per member are logged and written to the csv
(train_s, score_s), measured on the machine that runs the study.

Run (background, 1 thread):
  OMP_NUM_THREADS=1 nohup .venv/bin/python workflow_scripts/score_study.py --work /tmp/score_study \
      > /tmp/score_study.log 2>&1 &
Intermediate files are cached under --work, so a re-run only computes what is missing.
Writes docs/SCORES_STUDY.csv (molecule, loss, reduction, normalize, statistic, value) and
docs/SCORES_STUDY.md (one table per molecule).
"""
from __future__ import annotations

import sys
from pathlib import Path

# this folder holds select.py, which would shadow the standard library's `select` module
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import gzip
import itertools
import inspect  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bioprune.influence.ensemble import combine, member_seeds  # noqa: E402
from bioprune.hashing import unit_hash  # noqa: E402
from bioprune.influence.stability import THRESHOLDS, compare_scores, length_correlation  # noqa: E402

log = logging.getLogger("score_study")
MOLECULES = {
    # pool, ingest (config.yaml / protein_demo.yaml corpus), reference section, influence batch size
    "rna": ("resources/rna/pool.fa.gz", dict(molecule="rna", min_length=30, max_length=256),
            dict(layers=2, embed_dim=64, heads=4, lr=0.002, batch_size=32, epochs=6), 64),
    "protein": ("resources/protein/pool.fa.gz", dict(molecule="protein", min_length=30, max_length=400),
                dict(layers=2, embed_dim=64, heads=4, lr=0.002, batch_size=32, epochs=4), 32),
}
N_SCORE = {"rna": 6000, "protein": 5000}
SCORINGS = {"primary": (0, 0), "influence_seed": (1, 0), "reference_seed": (0, 1)}  # (influence, reference)
STATS = ["influence_spearman", "influence_within_decile", "influence_top0.5%_jaccard", "reference_spearman",
         "spearman_score_length"]


def ingest_pool(mol: str, work: Path, n_score: int) -> tuple[list[str], list[str]]:
    """Full-pool shards (for D_sub) and shards of the scored subsample, cached under work/mol."""
    from bioprune.ingest import IngestOptions, ingest

    pool, opts, _, _ = MOLECULES[mol]
    d = work / mol
    full = [str(d / f"shards/{i}-of-4.h5") for i in range(1, 5)]
    if not all(Path(p).exists() for p in full):
        ingest(ROOT / pool, full, str(d / "shards/holdout.h5"), IngestOptions(**opts, holdout_fraction=0.02))
    sub = [str(d / f"score_shards/{i}-of-2.h5") for i in (1, 2)]
    if not all(Path(p).exists() for p in sub):
        from bioprune.ingest import read_shard

        ids = [i for p in full for i in read_shard(p)[0]]
        frac = min(1.0, n_score / len(ids))
        keep = {i for i in ids if unit_hash(i, "score_study") < frac}
        fa = d / "score_subsample.fa"
        with open(ROOT / pool, "rb") as fh:
            raw = gzip.decompress(fh.read()).decode()
        with open(fa, "w") as out:
            for rec in raw.split(">")[1:]:
                head, _, seq = rec.partition("\n")
                if head.split()[0] in keep:
                    out.write(">" + rec if rec.endswith("\n") else ">" + rec + "\n")
        ingest(fa, sub, str(d / "score_shards/holdout.h5"), IngestOptions(**opts, holdout_fraction=0.0))
    return full, sub


TIMES: dict[str, float] = {}  # seconds per trained model / scored member (this run or the .json beside it)


def parse_train(text: str) -> dict:
    """'e4:w64:f0.1' -> {'epochs': 4, 'embed_dim': 64, 'subset_fraction': 0.1}."""
    out = {}
    for part in text.split(":"):
        key = {"e": "epochs", "w": "embed_dim", "f": "subset_fraction"}.get(part[:1])
        if key is None:
            raise SystemExit(f"--train {text}: parts are eE, wW, fF (epochs, embed_dim, subset_fraction)")
        out[key] = float(part[1:]) if key == "subset_fraction" else int(part[1:])
    return out


def train_dir(mol: str, work: Path, train: dict) -> Path:
    """work/mol for the demo reference setting (the issue-11 file names), work/mol/train_<tag> otherwise."""
    ref = MOLECULES[mol][2]
    if (train["epochs"], train["embed_dim"], train["subset_fraction"]) == (ref["epochs"], ref["embed_dim"], 0.1):
        return work / mol
    return work / mol / f"train_e{train['epochs']}_w{train['embed_dim']}_f{train['subset_fraction']:g}"


def timed(key: str, d: Path, fn) -> None:
    t0 = time.time()
    fn()
    TIMES[key] = time.time() - t0
    (d / f"{key}.seconds").write_text(f"{TIMES[key]:.1f}\n")


def seconds(key: str, d: Path) -> float:
    f = d / f"{key}.seconds"
    return float(f.read_text()) if f.exists() else float("nan")


def reference_model(mol: str, work: Path, shards: list[str], seed: int, train: dict | None = None) -> str:
    from bioprune.influence.reference import ReferenceConfig, build_reference

    train = train or default_train(mol)
    d = train_dir(mol, work, train)
    d.mkdir(parents=True, exist_ok=True)
    out = d / f"reference_seed{seed}.pt"
    if not out.exists():
        params = dict(MOLECULES[mol][2], seed=seed, device="cpu", checkpoint=None, **train)
        timed(f"train_seed{seed}", d, lambda: build_reference(shards, str(out), str(d / f"reference_seed{seed}_curves.h5"),
                                                              ReferenceConfig.from_params(params)))
        log.info("%s reference seed %d (%s) trained in %.0fs", mol, seed, d.name, TIMES[f"train_seed{seed}"])
    return str(out)


def default_train(mol: str) -> dict:
    ref = MOLECULES[mol][2]
    return {"epochs": ref["epochs"], "embed_dim": ref["embed_dim"], "subset_fraction": 0.1}


def score(mol: str, work: Path, full: list[str], sub: list[str], model: str, loss: str, reduction: str,
          inf_seed: int, ref_seed: int, draws: int, train: dict | None = None) -> dict:
    """scores.h5 of one (loss, reduction, seeds), normalize none; cached."""
    from bioprune.influence.scores import merge_scores, read_scores
    from bioprune.influence.sketches import InfluenceConfig, fit_diag_fisher, sketch_shard

    train = train or default_train(mol)
    d = train_dir(mol, work, train) / f"{loss}_{reduction}_inf{inf_seed}_ref{ref_seed}"
    out = d / "scores.h5"
    if not out.exists():
        t0 = time.time()
        extra = {"mask_draws": draws} if loss == "mlm_coverage" else {}
        cfg = InfluenceConfig(loss=loss, reduction=reduction, normalize="none", seed=inf_seed, subset_seed=ref_seed,
                              subset_fraction=train["subset_fraction"], batch_size=MOLECULES[mol][3], device="cpu",
                              **extra)
        fit_diag_fisher(full, model, str(d / "curvature.h5"), cfg)
        sk = []
        for i, p in enumerate(sub):
            sk.append(str(d / f"sketch_{i}.h5"))
            sketch_shard(p, model, sk[-1], cfg, str(d / "curvature.h5"))
        kw = {"normalize": "none"} if "normalize" in inspect.signature(merge_scores).parameters else {}
        merge_scores(sk, str(out), cfg.damping, **kw)
        (d / "score.seconds").write_text(f"{time.time() - t0:.1f}\n")
        log.info("%s %s %s inf%d ref%d scored in %.0fs", mol, loss, reduction, inf_seed, ref_seed, time.time() - t0)
    return read_scores(str(out))


def ensemble(members: list[dict], normalize: str, how: str) -> dict:
    """The members' scores, each under `normalize` (none / rayleigh), combined under `how` (rank / zscore / none)."""
    if len(members) == 1:
        return normalized(members[0], normalize)
    return combine([normalized(m, normalize) for m in members], how)


def normalized(sc: dict, normalize: str) -> dict:
    """normalize=rayleigh: g^T (F + lambda)^-1 g / g^T g from the same pass; length_rank: the score's
    percentile within its length decile (bioprune.influence.scores.length_rank, what the merge writes)."""
    from bioprune.influence.scores import length_rank

    if normalize == "none":
        return sc
    if normalize == "length_rank":
        return {**sc, "score": length_rank(sc["score"], sc["length"])}
    return {**sc, "score": np.asarray(sc["score"]) / np.maximum(np.asarray(sc["grad_sqnorm"]), 1e-300)}


def statistics(runs: dict[str, dict]) -> dict[str, float]:
    """Influence-seed and reference-seed agreement of three scorings (primary, influence_seed, reference_seed)."""
    inf = compare_scores(runs["primary"], runs["influence_seed"], [0.005])
    ref = compare_scores(runs["primary"], runs["reference_seed"], [0.005])
    return {"influence_spearman": inf["spearman"], "influence_within_decile": inf["within_decile_spearman"],
            "influence_top0.5%_jaccard": inf["top_k_jaccard"][0.005], "reference_spearman": ref["spearman"],
            "reference_within_decile": ref["within_decile_spearman"],
            "reference_top0.5%_jaccard": ref["top_k_jaccard"][0.005],
            "spearman_score_length": length_correlation(runs["primary"]), "n": inf["n"]}


def passes(row: dict) -> bool:
    t = {k[:2]: v for k, v in THRESHOLDS.items()}
    return (row["influence_spearman"] >= t["influence_seed", "spearman"][0]
            and row["influence_within_decile"] >= t["influence_seed", "within_decile_spearman"][0]
            and row["influence_top0.5%_jaccard"] >= t["influence_seed", "top_k_jaccard"][0]
            and abs(row["spearman_score_length"]) <= t["length", "spearman_score_length"][0]
            and row["reference_spearman"] >= t["reference_seed", "spearman"][0])


HEADER = """# Scoring-loss study (issue 11): which score is a property of the sequence?

Written by `workflow_scripts/score_study.py` (see its docstring for the exact procedure). Per molecule:
demo ingest settings, reference models for reference.seed 0 and 1 trained on the full pool's D_sub
(10%), diag-Fisher scores (lm_head.dense.weight, damping 1e-8) of a fixed subsample of the pool.
Columns: influence_* compare influence.seed 0 vs 1 (same reference model; only masks differ),
reference_* compare reference.seed 0 vs 1 (new D_sub and reference model; same masks),
spearman_score_length is the primary scoring's. Targets: influence Spearman >= 0.95, within-decile
>= 0.9, top-0.5% Jaccard >= 0.7, |Spearman(score, length)| <= 0.3, reference Spearman >= 0.7.
normalize=rayleigh is g^T (F + lambda)^-1 g / g^T g from the same pass; length_rank is the score's
percentile within its length decile. reconstruction has no random draw, so its influence-seed agreement
is 1 by construction (measured, not assumed). train = reference epochs:embed_dim:D_sub fraction; ensemble
= reference models averaged (reference.ensemble) after ensemble_normalize; reference_* compare the
ensembles of reference.seed 0 and 1 (disjoint members).
"""


AXES = ["train", "ensemble", "ensemble_normalize", "loss", "reduction", "normalize"]


def markdown(df: pd.DataFrame) -> str:
    cols = STATS + ["reference_within_decile", "reference_top0.5%_jaccard"]
    df = df.copy()
    for k, v in (("train", "demo"), ("ensemble", 1), ("ensemble_normalize", "-")):
        if k not in df:
            df[k] = v
    lines = [HEADER]
    for mol, g in df.groupby("molecule", sort=False):
        n = int(g["n"].iloc[0])
        lines += [f"### {mol} (n = {n} scored sequences)", "",
                  "| " + " | ".join(AXES) + " | " + " | ".join(cols) + " | meets all targets |",
                  "|" + "---|" * (len(cols) + len(AXES) + 1)]
        for r in g.to_dict("records"):
            vals = " | ".join(f"{r[c]:.3f}" for c in cols)
            axes = " | ".join(str(r[a]) for a in AXES)
            lines.append(f"| {axes} | {vals} | {'yes' if r['passes'] else 'no'} |")
        lines.append("")
    ok = df.groupby(AXES, sort=False)["passes"].agg(["all", "size"])
    n_mol = df["molecule"].nunique()
    winners = [" ".join(map(str, k)) for k, r in ok.iterrows() if r["all"] and r["size"] == n_mol]
    lines.append(f"Variants meeting every target on all {n_mol} molecule(s) measured: "
                 + (", ".join(winners) if winners else "none") + ".")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="/tmp/score_study")
    ap.add_argument("--molecules", nargs="+", default=["rna", "protein"])
    ap.add_argument("--losses", nargs="+", default=["reconstruction", "mlm", "mlm_coverage"])
    ap.add_argument("--reductions", nargs="+", default=["mean", "sum"])
    ap.add_argument("--n-score", type=int, default=0,
                    help="sequences scored per molecule, a subsample by id hash (default: rna 6000, protein 5000)")
    ap.add_argument("--cached-only", action="store_true", help="tabulate only the variants already scored")
    ap.add_argument("--mask-draws", type=int, default=7)
    ap.add_argument("--normalize", nargs="+", default=["none", "rayleigh"], help="influence.normalize values")
    ap.add_argument("--ensembles", nargs="+", type=int, default=[1], help="reference.ensemble sizes R")
    ap.add_argument("--ensemble-normalize", nargs="+", default=["rank", "zscore", "none"],
                    help="reference.ensemble_normalize values (R > 1)")
    ap.add_argument("--train", nargs="+", default=[],
                    help="reference settings eE:wW:fF (epochs, embed_dim, subset_fraction); default: the demo's")
    ap.add_argument("--out", default=str(ROOT / "docs" / "SCORES_STUDY"))
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("bioprune").setLevel(logging.WARNING)
    work = Path(a.work)
    rows = []
    for mol in a.molecules:
        full, sub = ingest_pool(mol, work, a.n_score or N_SCORE[mol])
        trains = [parse_train(t) for t in a.train] or [default_train(mol)]
        for train, (loss, red) in itertools.product(trains, itertools.product(a.losses, a.reductions)):
            tag = f"e{train['epochs']}:w{train['embed_dim']}:f{train['subset_fraction']:g}"
            d = train_dir(mol, work, train)
            for size in sorted(a.ensembles):
                members = {r: member_seeds(r, size) for r in (0, 1)}
                runs = {"primary": [(0, m) for m in members[0]], "reference_seed": [(0, m) for m in members[1]],
                        "influence_seed": [(1, m) for m in (members[0] if loss != "reconstruction" else members[0][:1])]}
                needed = {(i, m) for v in runs.values() for i, m in v}
                cached = all((d / f"{loss}_{red}_inf{i}_ref{m}/scores.h5").exists() for i, m in needed)
                if a.cached_only and not cached:
                    continue
                try:
                    got = {}
                    for i, m in sorted(needed, key=lambda t: (t[1] not in members[0], t[1] not in members[1], t)):
                        model = reference_model(mol, work, full, m, train) if not a.cached_only else None
                        got[i, m] = score(mol, work, full, sub, model, loss, red, i, m, a.mask_draws, train)
                except Exception as e:  # a loss the installed sketches.py does not offer yet
                    log.warning("%s %s %s %s R=%d skipped: %s", mol, tag, loss, red, size, e)
                    continue
                raw = {k: [got[t] for t in v] for k, v in runs.items()}
                if loss == "reconstruction":  # the influence seed enters nothing: member j's inf1 = its inf0
                    raw["influence_seed"] = raw["influence_seed"] + raw["primary"][1:]
                train_s = np.nanmean([seconds(f"train_seed{m}", d) for m in members[0] + members[1]])
                score_s = np.nanmean([seconds("score", d / f"{loss}_{red}_inf{i}_ref{m}") for i, m in needed])
                for norm, how in itertools.product(a.normalize, a.ensemble_normalize if size > 1 else ["-"]):
                    row = dict(molecule=mol, train=tag, ensemble=size, ensemble_normalize=how, loss=loss,
                               reduction=red, normalize=norm,
                               **statistics({k: ensemble(v, norm, how) for k, v in raw.items()}),
                               train_s=train_s, score_s=score_s)
                    row["passes"] = passes(row)
                    rows.append(row)
                    log.info("%s", json.dumps({k: (round(v, 4) if isinstance(v, float) else v)
                                               for k, v in row.items()}))
                df = pd.DataFrame(rows)  # after every ensemble size: a long run leaves its table so far
                df.to_csv(a.out + ".csv", index=False)
                Path(a.out + ".md").write_text(markdown(df))
    print(markdown(pd.DataFrame(rows)))


if __name__ == "__main__":
    main()

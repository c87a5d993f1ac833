"""Per-stage parameter dicts: what the Snakemake rules carry in `params:` (so a config edit re-runs
exactly the stages that use the edited value) and what the `bioprune` subcommands pass on."""
from __future__ import annotations

def corpus_files(config: dict) -> list[str]:
    """corpus.path as the list of input files (a glob expanded, sorted); the order fixes which id
    of a duplicated sequence is kept (the first, in file order then record order)."""
    from bioprune.ingest.pipeline import expand_inputs

    return expand_inputs(config["corpus"]["path"])


def ingest_spans(config: dict) -> list[list[dict | None]]:
    """Per input file, the byte ranges of its route jobs (corpus.split_mb; [None]: one job for the
    whole file), from the file sizes when the workflow is planned."""
    from bioprune.ingest.ranges import file_spans, split_bytes

    split = split_bytes(config["corpus"]["split_mb"])
    return [file_spans(f, split) for f in corpus_files(config)]


def ingest_params(config: dict) -> dict:
    c = config["corpus"]
    return {k: c[k] for k in ("molecule", "ambiguous", "min_length", "max_length", "length_policy", "holdout_fraction")}


def reference_params(config: dict, seed: int | None = None) -> dict:
    """Reference stage: D_sub and the proxy's init are drawn with `seed` (default reference.seed)."""
    r = {k: v for k, v in config["reference"].items() if k not in ENSEMBLE_KEYS}  # one model: same params as R = 1
    if seed is not None:
        r["seed"] = seed
    r["device"] = config["device"]
    return r


ENSEMBLE_KEYS = ("ensemble", "ensemble_normalize")


def ensemble_params(config: dict, seed: int | None = None) -> dict:
    """Ensemble merge (reference.ensemble > 1): its size, per-model normalisation and the reference seed
    that draws its members (default reference.seed)."""
    r = config["reference"]
    return {"size": r["ensemble"], "normalize": r["ensemble_normalize"], "seed": r["seed"] if seed is None else seed}


# which influence keys each stage depends on (so an edit re-runs exactly what it changes)
_GRADIENT_KEYS = ("estimator", "params", "loss", "reduction", "mask_draws", "batch_size", "max_tokens", "pad_to",
                  "paper_exact")


def influence_params(config: dict, stage: str, reference_seed: int | None = None,
                     influence_seed: int | None = None) -> dict:
    """Influence settings of one stage for one scoring run (reference seed r, influence seed i).

    curvature: what shapes D_sub's gradients; sketch: that plus damping (diag_fisher applies it per
    shard) or sketch_dim (projected), and normalize; scores: only what the merge applies (projected
    damping). `seed` is the influence seed (masks, projections), `subset_seed` the reference seed (D_sub).
    """
    inf = config["influence"]
    p = {k: inf[k] for k in _GRADIENT_KEYS}
    p.update(seed=inf["seed"] if influence_seed is None else influence_seed,
             subset_seed=config["reference"]["seed"] if reference_seed is None else reference_seed,
             subset_fraction=config["reference"]["subset_fraction"], device=config["device"])
    if stage == "curvature":
        return p
    if stage == "sketch":
        p["normalize"] = inf["normalize"]
        if inf["estimator"] == "diag_fisher":
            p["damping"] = inf["damping"]
        else:
            p["sketch_dim"] = inf["sketch_dim"]
        return p
    if stage == "scores":
        if inf["estimator"] == "projected":
            return {"damping": inf["damping"], "relative_damping": inf["relative_damping"],
                    "leave_one_out": inf["dsub_leave_one_out"]}
        return {}
    raise ValueError(f"unknown influence stage {stage!r}")


def leakage_params(config: dict) -> dict:
    return {**config["leakage"], "molecule": config["corpus"]["molecule"]}


def split_params(config: dict) -> dict:
    """What a stored probe split depends on (not max_eval: the split covers the whole evaluation set)."""
    b = config["benchmark"]
    return {"molecule": config["corpus"]["molecule"], "split_identity": b["split_identity"],
            "split_coverage": b["split_coverage"], "test_families": b["test_families"]}


def selection_params(config: dict, strategy: str) -> dict:
    """Selection settings one strategy depends on."""
    s = config["selection"]
    p = {"strategy": strategy}
    if strategy == "cci":
        p["cci"] = dict(s["cci"])
    if strategy == "top_influence":
        p["top_influence"] = dict(s["top_influence"])
    if strategy == "cluster":
        p["cluster"] = dict(s["cluster"])
    if strategy == "degenerate":
        p["degenerate"] = dict(s["degenerate"])
    by = p.get(strategy, {}).get("stratify_by", "none")
    if by == "length":
        p["length_strata"] = s["length_strata"]
    if by == "source" and s.get("source_map"):
        p["source_map"] = s["source_map"]
    return p


def full_seeds(config: dict) -> list[int]:
    """Seeds of the full-pool model: the first pretrain.full_seeds seeds (all when null)."""
    p = config["pretrain"]
    if not p["include_full"]:
        return []
    n = p["full_seeds"]
    return list(config["seeds"]) if n is None else list(config["seeds"])[:n]


def pretrain_params(config: dict) -> dict:
    p = dict(config["pretrain"])
    p.pop("include_full")
    p.pop("full_seeds")
    p["device"] = config["device"]
    return p


def kmer_params(config: dict) -> dict:
    """benchmark_params plus `validation_filter`: with the held-out filter on (leakage.enabled and
    leakage.holdout), the k-mer model's validation slice is filtered the same way, so h is chosen on
    sequences without a near-copy in the fit data, as the held-out file it is scored on."""
    lk = config["leakage"]
    vf = ({"molecule": config["corpus"]["molecule"], "max_identity": lk["max_identity"],
           "min_coverage": lk["min_coverage"]} if lk["enabled"] and lk["holdout"] else None)
    return {**benchmark_params(config), "validation_filter": vf}


def benchmark_params(config: dict) -> dict:
    b = dict(config["benchmark"])
    b.pop("rnafold")
    b.pop("nearest_neighbour")
    b.pop("kmer_baseline")
    b["split_dir"] = f"{config['results']}/benchmark/splits"
    b["molecule"] = config["corpus"]["molecule"]
    b["device"] = config["device"]
    return b

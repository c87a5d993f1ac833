"""Models: build fair-esm ESM2 for a molecule, save checkpoints atomically, load any supported format.

Supported by `load_model(path)`:
- bioprune checkpoints (written by this workflow's reference and pretraining stages);
- fair-esm ESM-2 files, the format `esm.pretrained.load_model_and_alphabet_local` reads
  (`{"cfg": {"model": ...}, "model": state_dict}` with `encoder.sentence_encoder.` prefixes).
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import torch
from esm.data import Alphabet
from esm.model.esm2 import ESM2

from .alphabets import alphabet_name, get_alphabet
from .errors import BiopruneError
from .h5io import atomic_path

CHECKPOINT_FORMAT = "bioprune-esm2"
CHECKPOINT_VERSION = 1


def build_model(molecule: str, layers: int, embed_dim: int, heads: int, seed: int, token_dropout: bool = True) -> ESM2:
    """A freshly initialised ESM2 with the molecule's alphabet; init is fixed by `seed`."""
    if embed_dim % heads:
        raise BiopruneError(f"config: model.embed_dim ({embed_dim}) must be divisible by model.heads ({heads})")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ESM2(num_layers=layers, embed_dim=embed_dim, attention_heads=heads,
                     alphabet=get_alphabet(molecule), token_dropout=token_dropout)
    return model


def arch_of(model: ESM2) -> dict:
    """The architecture hyper-parameters needed to rebuild `model`."""
    return {"num_layers": model.num_layers, "embed_dim": model.embed_dim,
            "attention_heads": model.attention_heads, "token_dropout": bool(model.token_dropout)}


def save_checkpoint(path: str | os.PathLike, model: ESM2, molecule: str, meta: dict | None = None,
                    extra: dict | None = None) -> None:
    """Write a bioprune checkpoint atomically (temp file in the same folder, then rename)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "molecule": molecule,
               "alphabet": alphabet_name(molecule), "arch": arch_of(model), "state_dict": state,
               "meta": meta or {}}
    if extra:
        payload.update(extra)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def _torch_load(path: Path) -> Any:
    if not path.exists():
        raise BiopruneError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not a checkpoint"
        raise BiopruneError(f"{path}: not a PyTorch checkpoint ({type(e).__name__}: {e})") from None


def _cfg_get(cfg: Any, key: str):
    return cfg[key] if isinstance(cfg, dict) else getattr(cfg, key)


def load_model(path: str | os.PathLike, molecule: str | None = None) -> tuple[ESM2, Alphabet]:
    """Load a checkpoint as fair-esm objects `(model, alphabet)` in eval mode.

    When `molecule` is given, a checkpoint whose alphabet belongs to another molecule is an error.
    """
    path = Path(path)
    data = _torch_load(path)
    if not isinstance(data, dict):
        raise BiopruneError(f"{path}: not a model checkpoint (top level is {type(data).__name__})")
    if data.get("format") == CHECKPOINT_FORMAT:
        ck_mol = data["molecule"]
        arch = data["arch"]
        state = data["state_dict"]
    elif "cfg" in data and "model" in data:
        ck_mol = "protein"
        cfg = data["cfg"]["model"]
        arch = {"num_layers": _cfg_get(cfg, "encoder_layers"), "embed_dim": _cfg_get(cfg, "encoder_embed_dim"),
                "attention_heads": _cfg_get(cfg, "encoder_attention_heads"),
                "token_dropout": bool(_cfg_get(cfg, "token_dropout"))}
        pattern = re.compile(r"^(encoder\.sentence_encoder\.|encoder\.)")
        state = {pattern.sub("", k): v for k, v in data["model"].items()}
    else:
        raise BiopruneError(
            f"{path}: unrecognised checkpoint (keys {sorted(data)[:6]}); expected a bioprune checkpoint "
            "or a fair-esm ESM-2 file"
        )
    if molecule is not None and ck_mol != molecule:
        raise BiopruneError(
            f"{path}: checkpoint alphabet is for {ck_mol} ({alphabet_name(ck_mol)}) but the corpus "
            f"(config key corpus.molecule) is {molecule}"
        )
    alphabet = get_alphabet(ck_mol)
    model = ESM2(num_layers=arch["num_layers"], embed_dim=arch["embed_dim"],
                 attention_heads=arch["attention_heads"], alphabet=alphabet,
                 token_dropout=arch.get("token_dropout", True))
    expected = set(model.state_dict())
    optional = {"contact_head.regression.weight", "contact_head.regression.bias"}
    missing = expected - set(state) - optional
    unexpected = set(state) - expected
    if missing or unexpected:
        raise BiopruneError(
            f"{path}: state dict does not match an ESM2 with the {ck_mol} alphabet "
            f"(missing {sorted(missing)[:4]}, unexpected {sorted(unexpected)[:4]})"
        )
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as e:
        raise BiopruneError(f"{path}: weights do not fit the {ck_mol} alphabet/architecture: {e}") from None
    model.eval()
    return model, alphabet


def checkpoint_molecule(path: str | os.PathLike) -> str:
    """The molecule a checkpoint was trained on."""
    data = _torch_load(Path(path))
    return data.get("molecule", "protein") if isinstance(data, dict) else "?"


def model_checksum(model: torch.nn.Module) -> str:
    """SHA-256 over parameter bytes in name order: identifies the exact weights used for scoring."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def pick_device(requested: str = "auto") -> torch.device:
    """CUDA when present (or asked for), else CPU."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise BiopruneError("config key device: 'cuda' requested but no CUDA device is visible")
    return torch.device(requested)

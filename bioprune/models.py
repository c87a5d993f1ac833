"""Models: build fair-esm ESM2 for a molecule, save checkpoints atomically, load any supported format.

Supported by `load_model(path)`:
- bioprune checkpoints (written by this workflow's reference and pretraining stages);
- fair-esm ESM-2 files, the format `esm.pretrained.load_model_and_alphabet_local` reads
  (`{"cfg": {"model": ...}, "model": state_dict}` with `encoder.sentence_encoder.` prefixes);
- ESM-1b-style `{"args": Namespace(arch="roberta_large", ...), "model": ...}` files: fair-esm's
  ESM-1b (protein alphabet) and released RNA-FM checkpoints (the PyPI `rna-fm` package's RNA alphabet).
  RNA-FM weights are mapped onto bioprune's RNA alphabet by token: the rows of A, C, G, U, N and the
  special tokens are kept, the ambiguity-code rows (R, Y, K, ...) are dropped (ingest maps those to N).
"""
from __future__ import annotations

import hashlib
import os
import re
from argparse import Namespace
from pathlib import Path
from typing import Any

import torch
from esm.data import Alphabet
from esm.model.esm1 import ProteinBertModel
from esm.model.esm2 import ESM2

from bioprune.alphabets import alphabet_name, get_alphabet
from bioprune.errors import BiopruneError
from bioprune.h5io import atomic_path

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


# RNA-FM's RNA alphabet (rna-fm 0.2.2, fm/constants.py rnaseq_toks, ESM-1b layout)
RNAFM_TOKS = ["A", "C", "G", "U", "R", "Y", "K", "M", "S", "W", "B", "D", "H", "V", "N", "-"]


def rnafm_alphabet() -> Alphabet:
    """The alphabet RNA-FM checkpoints were trained with (token order matters for their weights)."""
    return Alphabet(standard_toks=RNAFM_TOKS, prepend_toks=("<cls>", "<pad>", "<eos>", "<unk>"),
                    append_toks=("<mask>",), prepend_bos=True, append_eos=True)


def arch_of(model) -> dict:
    """The architecture hyper-parameters needed to rebuild `model` (ESM-2, or ESM-1b / RNA-FM)."""
    if isinstance(model, ProteinBertModel):
        return {"type": "esm1b", "args": dict(vars(model.args))}
    if hasattr(model, "arch"):  # backbones.VocabAdapter (Hugging Face, ESM-C)
        return model.arch()
    return {"type": "esm2", "num_layers": model.num_layers, "embed_dim": model.embed_dim,
            "attention_heads": model.attention_heads, "token_dropout": bool(model.token_dropout)}


def n_layers(model) -> int:
    """Number of transformer layers of an ESM-2, ESM-1b or backbones (HF, ESM-C) model."""
    return model.num_layers if hasattr(model, "num_layers") else len(model.layers)


def _esm1b_from_file(data: dict, path: Path) -> tuple[str, dict, dict]:
    """Molecule, architecture and state dict (on bioprune's alphabet) of an ESM-1b-style file."""
    args = data["args"]
    if getattr(args, "arch", None) != "roberta_large":
        raise BiopruneError(f"{path}: only ESM-1b ('roberta_large') args files are supported, found arch={getattr(args, 'arch', None)!r}")
    model_args = {re.sub(r"^encoder_", "", k): v for k, v in vars(args).items()}
    state = {re.sub(r"^(encoder\.)?(sentence_encoder\.)?", "", k): v for k, v in data["model"].items()}
    rows = state["embed_tokens.weight"].shape[0]
    source = rnafm_alphabet()
    if rows == len(source):
        molecule = "rna"
    elif rows == len(get_alphabet("protein")):
        molecule, source = "protein", get_alphabet("protein")
    else:
        raise BiopruneError(f"{path}: embedding has {rows} tokens, neither RNA-FM's ({len(source)}) nor ESM's protein alphabet")
    target = get_alphabet(molecule)
    for key in ("embed_tokens.weight", "lm_head.weight", "lm_head.bias"):
        if key in state:
            old = state[key]
            new = torch.zeros((len(target),) + tuple(old.shape[1:]), dtype=old.dtype)
            for tok, idx in target.tok_to_idx.items():
                if tok in source.tok_to_idx:
                    new[idx] = old[source.tok_to_idx[tok]]
            state[key] = new
    # as fair-esm's and rna-fm's loaders do ("for token drop"): the <mask> embedding row (tied to the LM
    # head's) is zero, whatever the file holds
    for key in ("embed_tokens.weight", "lm_head.weight"):
        if key in state:
            state[key][target.mask_idx] = 0
    model_args["emb_layer_norm_before"] = any(k.startswith("emb_layer_norm_before") for k in state)
    return molecule, {"type": "esm1b", "args": model_args}, state


def _build(arch: dict, alphabet: Alphabet, source: str = "checkpoint"):
    if arch.get("type") == "backbone":
        from bioprune.backbones import rebuild

        return rebuild(arch, source)
    if arch.get("type") == "esm1b":
        return ProteinBertModel(Namespace(**arch["args"]), alphabet)
    return ESM2(num_layers=arch["num_layers"], embed_dim=arch["embed_dim"], attention_heads=arch["attention_heads"],
                alphabet=alphabet, token_dropout=arch.get("token_dropout", True))


def save_torch(obj: Any, path: str | os.PathLike) -> None:
    """torch.save `obj` to `path` atomically (temp file, then rename), through a file object so the
    archive's inner folder is torch's fixed "archive/", not the random temp-file name: the same object
    gives the same bytes (reproducible checksums)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)


def save_checkpoint(path: str | os.PathLike, model, molecule: str, meta: dict | None = None,
                    extra: dict | None = None) -> None:
    """Write a bioprune checkpoint atomically and byte-reproducibly (`save_torch`)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "molecule": molecule,
               "alphabet": alphabet_name(molecule), "arch": arch_of(model), "state_dict": state,
               "meta": meta or {}}
    if extra:
        payload.update(extra)
    save_torch(payload, path)


def _torch_load(path: Path) -> Any:
    if not path.exists():
        raise BiopruneError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not a checkpoint"
        raise BiopruneError(f"{path}: not a PyTorch checkpoint ({type(e).__name__}: {e})") from None


def _cfg_get(cfg: Any, key: str):
    return cfg[key] if isinstance(cfg, dict) else getattr(cfg, key)


def load_model(path: str | os.PathLike, molecule: str | None = None) -> tuple[torch.nn.Module, Alphabet]:
    """Load a checkpoint as fair-esm objects `(model, alphabet)` in eval mode.

    When `molecule` is given, a checkpoint whose alphabet belongs to another molecule is an error.
    """
    path = Path(path)
    from bioprune.backbones import is_foreign_state, load_foreign

    if path.is_dir():  # a Hugging Face directory (bioprune.backbones.hf)
        return _checked_foreign(load_foreign(path), path, molecule)
    data = _torch_load(path)
    if is_foreign_state(data):  # a released ESM-C .pth (bioprune.backbones.esmc)
        return _checked_foreign(load_foreign(path, data), path, molecule)
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
    elif "args" in data and "model" in data:
        ck_mol, arch, state = _esm1b_from_file(data, path)
    else:
        raise BiopruneError(
            f"{path}: unrecognised checkpoint (keys {sorted(data)[:6]}); expected a bioprune checkpoint, "
            "a fair-esm ESM-2 file or an ESM-1b / RNA-FM file"
        )
    if molecule is not None and ck_mol != molecule:
        raise BiopruneError(
            f"{path}: checkpoint alphabet is for {ck_mol} ({alphabet_name(ck_mol)}) but the corpus "
            f"(config key corpus.molecule) is {molecule}"
        )
    alphabet = get_alphabet(ck_mol)
    model = _build(arch, alphabet, str(path))
    expected = set(model.state_dict())
    optional = {"contact_head.regression.weight", "contact_head.regression.bias"}
    missing = expected - set(state) - optional
    unexpected = set(state) - expected
    if missing or unexpected:
        raise BiopruneError(
            f"{path}: state dict does not match the {arch.get('type', 'esm2')} model with the {ck_mol} alphabet "
            f"(missing {sorted(missing)[:4]}, unexpected {sorted(unexpected)[:4]})"
        )
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as e:
        raise BiopruneError(f"{path}: weights do not fit the {ck_mol} alphabet/architecture: {e}") from None
    model.eval()
    return model, alphabet


def _checked_foreign(model, path: Path, molecule: str | None):
    if molecule is not None and model.molecule != molecule:
        raise BiopruneError(f"{path}: checkpoint vocabulary is for {model.molecule} but the corpus "
                            f"(config key corpus.molecule) is {molecule}")
    model.eval()
    return model, get_alphabet(model.molecule)


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

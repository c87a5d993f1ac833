"""Reference models beyond fair-esm ESM-2/ESM-1b: a registry that `models.load_model` dispatches to.

- a directory with `config.json`: Hugging Face masked LM (hf.py);
- a raw state dict with `transformer.blocks.*` keys: a released ESM-C `.pth` (esmc.py);
- a bioprune checkpoint whose arch type is "backbone": one of the above, saved by this workflow.
Every model returned is a `VocabAdapter`: fair-esm ESM2's call interface over bioprune's alphabets.
"""
from __future__ import annotations

from pathlib import Path

from bioprune.backbones.adapter import VocabAdapter, check_vocab

__all__ = ["VocabAdapter", "check_vocab", "load_foreign", "rebuild", "is_foreign_state"]


def is_foreign_state(data) -> bool:
    """True for a loaded file this package reads (an ESM-C state dict)."""
    from bioprune.backbones.esmc import is_esmc_state

    return is_esmc_state(data)


def load_foreign(path: Path, data=None) -> VocabAdapter:
    """Load a Hugging Face directory, or an ESM-C state dict `data` read from `path`."""
    if data is None:
        from bioprune.backbones.hf import load_hf

        return load_hf(path)
    from bioprune.backbones.esmc import load_esmc

    return load_esmc(data, source=str(path))


def rebuild(arch: dict, source: str) -> VocabAdapter:
    """A fresh model of the architecture stored in a bioprune checkpoint (weights loaded by the caller)."""
    if arch["kind"] == "hf":
        from bioprune.backbones.hf import rebuild_hf

        return rebuild_hf(arch, source)
    if arch["kind"] == "esmc":
        from bioprune.backbones.esmc import rebuild_esmc

        return rebuild_esmc(arch, source)
    raise ValueError(f"unknown backbone kind {arch['kind']!r}")

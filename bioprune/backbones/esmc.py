"""ESM-C (EvolutionaryScale) native implementation: placeholder until implemented."""
from __future__ import annotations


def is_esmc_state(data) -> bool:
    return isinstance(data, dict) and "embed.weight" in data and any(
        isinstance(k, str) and k.startswith("transformer.blocks.") for k in data)

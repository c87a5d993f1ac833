#!/usr/bin/env python
"""Write the ESM-C parity fixture (tests/data/esmc_tiny.pth + esmc_tiny_expected.pt) with EvolutionaryScale's `esm`.

The fixture is a small randomly initialised ESMC (d_model 128, 2 heads of 64, 2 layers: the released
models' head width) built by the `esm` package's own `ESMC` class, saved as the released weights are
(`torch.save(model.state_dict())`, like esmc_300m_2024_12_v0.pth), plus a padded batch of token ids
from the package's tokenizer and the logits, per-layer hidden states and final embeddings it computes
in fp32 on CPU. tests/backbones/test_esmc.py checks bioprune.backbones.esmc against it (no network, no `esm` 3.x).

`esm` 3.x and fair-esm both own the `esm` module, so this runs in its own virtual environment:

    python3 -m venv /tmp/esmvenv
    /tmp/esmvenv/bin/pip install --no-deps esm==3.2.1.post1
    /tmp/esmvenv/bin/pip install einops attrs msgpack-numpy brotli cloudpathlib tenacity zstd biotite httpx
    # torch and transformers from bioprune's venv (after esm's own site-packages, so its `esm` wins):
    echo "$PWD/.venv/lib/python3.11/site-packages" > /tmp/esmvenv/lib/python3.11/site-packages/zz_bioprune.pth
    /tmp/esmvenv/bin/python workflow_scripts/make_esmc_fixture.py tests/data
"""
import os
import sys

# this folder holds select.py, which would shadow the standard library's `select`
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]

import torch  # noqa: E402

SEQS = ["MKTAYIAKQRQISFVKSHFSRQLEERLGLIEV", "GSHMLEDPVAGX", "ACDEFGHIKLMNPQRSTVWY"]


def main(out_dir: str) -> None:
    import esm
    from esm.models.esmc import ESMC
    from esm.tokenization import get_esmc_model_tokenizers

    torch.manual_seed(0)
    tok = get_esmc_model_tokenizers()
    model = ESMC(d_model=128, n_heads=2, n_layers=2, tokenizer=tok, use_flash_attn=False).eval()
    with torch.no_grad():  # norms start at 1/0 and biases at 0: randomise every weight so each one matters
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    ids = [tok(s)["input_ids"] for s in SEQS]
    T = max(len(i) for i in ids)
    tokens = torch.full((len(ids), T), tok.pad_token_id, dtype=torch.long)
    for k, i in enumerate(ids):
        tokens[k, : len(i)] = torch.tensor(i)
    tokens[0, 5] = tok.mask_token_id  # a masked position, as in scoring
    with torch.no_grad():
        out = model(sequence_tokens=tokens)
    os.makedirs(out_dir, exist_ok=True)
    torch.save(model.state_dict(), os.path.join(out_dir, "esmc_tiny.pth"))
    torch.save({"sequences": SEQS, "tokens": tokens, "logits": out.sequence_logits.float(),
                "hidden_states": out.hidden_states.float(), "embeddings": out.embeddings.float(),
                "n_heads": 2, "esm_version": getattr(esm, "__version__", "3.x")},
               os.path.join(out_dir, "esmc_tiny_expected.pt"))
    print(f"wrote {out_dir}/esmc_tiny.pth and esmc_tiny_expected.pt (tokens {tuple(tokens.shape)})")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data")

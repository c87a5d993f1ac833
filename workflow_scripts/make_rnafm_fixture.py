#!/usr/bin/env python
"""Write the RNA-FM parity fixture (tests/data/RNA-FM_tiny.pth + RNA-FM_tiny_expected.pt) with PyPI `rna-fm`.

A small randomly initialised RNA-FM (the package's `fm.BioBertModel`, ESM-1b layout: 2 layers, width 32,
4 heads) saved in the released checkpoint's format (`{"args": Namespace(arch="roberta_large",
encoder_layers=..., ...), "model": {"encoder.sentence_encoder.*", "encoder.lm_head.*"}}`, as
RNA-FM_pretrained.pth), then loaded back with the package's own loader
(`fm.pretrained.load_model_and_alphabet_local(path, theme="rna")`, which e.g. zeroes the <mask>
embedding row) and run on a padded batch with a masked position: its token ids, logits and per-layer
representations go in the expected file. tests/backbones/test_rnafm.py loads the .pth with bioprune.models.load_model
and compares (no network, no `rna-fm` needed).

    python3 -m venv /tmp/fmvenv
    echo "$PWD/.venv/lib/python3.11/site-packages" > /tmp/fmvenv/lib/python3.11/site-packages/zz_bioprune.pth
    /tmp/fmvenv/bin/pip install --no-deps rna-fm==0.2.2 && /tmp/fmvenv/bin/pip install ptflops tqdm
    /tmp/fmvenv/bin/python workflow_scripts/make_rnafm_fixture.py tests/data
"""
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))  # this folder's select.py shadows the stdlib module
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]

from argparse import Namespace  # noqa: E402

import torch  # noqa: E402

SEQS = ["GGACUUCGGUCCAGCAUGCAGGCAN", "ACGUACGU", "UUAGCGCUAAGGNCC"]


def main(out_dir: str) -> None:
    import fm

    torch.manual_seed(0)
    alphabet = fm.Alphabet.from_architecture("roberta_large", "rna")
    args = Namespace(arch="roberta_large", encoder_layers=2, encoder_embed_dim=32, encoder_ffn_embed_dim=64,
                     encoder_attention_heads=4, max_positions=64)
    inner = Namespace(arch="roberta_large", layers=2, embed_dim=32, ffn_embed_dim=64, attention_heads=4,
                      max_positions=64, emb_layer_norm_before=True)
    model = fm.BioBertModel(inner, alphabet)
    with torch.no_grad():  # norms start at 1/0, biases at 0: randomise every weight so each one matters
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    state = {("encoder." if k.startswith("lm_head") else "encoder.sentence_encoder.") + k: v
             for k, v in model.state_dict().items() if not k.startswith("contact_head")}
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "RNA-FM_tiny.pth")
    torch.save({"args": args, "model": state}, path)
    with torch.serialization.safe_globals([Namespace]):  # torch >= 2.6 loads weights_only by default
        ref, ref_alphabet = fm.pretrained.load_model_and_alphabet_local(path, theme="rna")
    ref.eval()
    _, _, tokens = ref_alphabet.get_batch_converter()([(str(i), s) for i, s in enumerate(SEQS)])
    tokens[0, 3] = ref_alphabet.mask_idx
    with torch.no_grad():
        out = ref(tokens, repr_layers=[0, 1, 2])
    torch.save({"sequences": SEQS, "tokens": tokens, "toks": ref_alphabet.all_toks, "logits": out["logits"],
                "representations": out["representations"]}, os.path.join(out_dir, "RNA-FM_tiny_expected.pt"))
    print(f"wrote {path} and RNA-FM_tiny_expected.pt (tokens {tuple(tokens.shape)})")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data")

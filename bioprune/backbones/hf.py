"""Hugging Face `transformers` masked LMs (EsmForMaskedLM, BertForMaskedLM, RobertaForMaskedLM) from a local directory.

The directory holds `config.json`, the weights (`model.safetensors` or `pytorch_model.bin`) and the
tokenizer (`vocab.txt`, or `tokenizer.json` / `tokenizer_config.json` with its vocabulary). The
vocabulary must have one token per residue (ESM-2, ProtBERT, AntiBERTy, RNA BERTs do; BPE/k-mer
tokenizers are refused). AntiBERTy's package layout (config `architectures: ["AntiBERTy"]`, a BERT
with extra classification heads, and `vocab.txt` one folder up) loads as BertForMaskedLM.

`influence.params: [lm_head.dense.weight]` (the default) means the dense layer of the MLM head,
before its layer norm and decoder: `lm_head.dense` (ESM, RoBERTa) or `cls.predictions.transform.dense` (BERT).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from bioprune.alphabets import PROTEIN_STANDARD, RNA_STANDARD
from bioprune.errors import BiopruneError
from bioprune.backbones.adapter import VocabAdapter

CLASSES = {"EsmForMaskedLM": "lm_head.dense", "BertForMaskedLM": "cls.predictions.transform.dense",
           "RobertaForMaskedLM": "lm_head.dense"}
# architectures saved by other code whose MLM part is one of CLASSES (extra heads are dropped)
ALIASES = {"AntiBERTy": "BertForMaskedLM"}
DROPPABLE = ("bert.pooler.", "cls.species.", "cls.chain.", "cls.graft.", "esm.contact_head.", "roberta.pooler.")


def _transformers():
    try:
        import transformers
    except ImportError:
        raise BiopruneError("reference.checkpoint is a Hugging Face directory but `transformers` is not installed "
                            "(pip install 'bioprune[hf]')") from None
    transformers.logging.set_verbosity_error()
    return transformers


def is_hf_dir(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").exists()


def _class_name(cfg: dict, path: Path) -> str:
    for arch in cfg.get("architectures") or []:
        arch = ALIASES.get(arch, arch)
        if arch in CLASSES:
            return arch
    raise BiopruneError(f"{path}/config.json: architectures {cfg.get('architectures')} not supported; "
                        f"expected one of {sorted(CLASSES)} (config key reference.checkpoint)")


def _vocab(path: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Token -> id and the special ids, from the checkpoint's tokenizer files."""
    vocab_file = next((p for p in (path / "vocab.txt", path.parent / "vocab.txt") if p.exists()), None)
    if vocab_file is not None and not (path / "tokenizer.json").exists():
        toks = vocab_file.read_text().split("\n")
        vocab = {t.strip(): i for i, t in enumerate(toks) if t.strip()}
    else:
        try:
            tok = _transformers().AutoTokenizer.from_pretrained(str(path))
        except Exception as e:  # noqa: BLE001 - any tokenizer failure is a checkpoint problem
            raise BiopruneError(f"{path}: no tokenizer could be loaded ({type(e).__name__}: {e})") from None
        vocab = dict(tok.get_vocab())
        probe = "ACDEFGHIKLMNPQRSTVWY" if all(c in vocab for c in "DEFHIKLMNPQRSTVWY") else "ACGU"
        pieces = {tuple(tok.tokenize(probe)), tuple(tok.tokenize(" ".join(probe)))}
        if tuple(probe) not in pieces:  # BPE / k-mer tokenizers split sequences otherwise
            raise BiopruneError(f"{path}: the tokenizer does not give one token per residue ({probe[:6]}... -> "
                                f"{sorted(pieces)[0][:6]}); only per-residue vocabularies are supported")
    names = {"cls": ("<cls>", "[CLS]", "<s>"), "eos": ("<eos>", "[SEP]", "</s>"), "pad": ("<pad>", "[PAD]"),
             "unk": ("<unk>", "[UNK]"), "mask": ("<mask>", "[MASK]")}
    specials = {}
    for role, cands in names.items():
        hit = next((vocab[c] for c in cands if c in vocab), None)
        if hit is None:
            raise BiopruneError(f"{path}: tokenizer has no {role} token (looked for {', '.join(cands)})")
        specials[role] = hit
    return vocab, specials


def _molecule(vocab: dict[str, int], path: Path) -> str:
    if all(c in vocab for c in PROTEIN_STANDARD):
        return "protein"
    if all(c in vocab for c in RNA_STANDARD):
        return "rna"
    raise BiopruneError(f"{path}: the tokenizer has no per-residue tokens for the 20 amino acids or for A, C, G, U; "
                        "only per-residue vocabularies are supported (config key reference.checkpoint)")


class HFMaskedLM(VocabAdapter):
    """A transformers *ForMaskedLM behind the fair-esm interface (see adapter.VocabAdapter)."""

    kind = "hf"

    def __init__(self, net, class_name: str, molecule: str, vocab: dict, specials: dict, source: str = "checkpoint"):
        cfg = net.config
        spec = {"class": class_name, "config": cfg.to_dict(), "vocab": vocab, "specials": specials}
        super().__init__(molecule, vocab, specials, cfg.vocab_size, spec, cfg.num_hidden_layers, cfg.hidden_size, source)
        self.net = net
        self.param_aliases = {"lm_head.dense.weight": f"net.{CLASSES[class_name]}.weight"}

    def _run(self, ids, attention_mask, hidden, attentions):
        if attentions and getattr(self.net.config, "_attn_implementation", "eager") != "eager":
            if not hasattr(self.net, "set_attn_implementation"):
                raise BiopruneError(f"{self.source}: attention maps need transformers >= 4.48 (eager attention)")
            self.net.set_attn_implementation("eager")  # sdpa kernels return no attention maps
        out = self.net(input_ids=ids, attention_mask=attention_mask.long(), output_hidden_states=hidden,
                       output_attentions=attentions, return_dict=True)
        return out.logits, out.hidden_states, out.attentions


def load_hf(path: Path) -> HFMaskedLM:
    """Load a local transformers directory (module doc) in eval mode."""
    tf = _transformers()
    cfg = json.loads((path / "config.json").read_text())
    name = _class_name(cfg, path)
    vocab, specials = _vocab(path)
    molecule = _molecule(vocab, path)
    try:
        net, info = getattr(tf, name).from_pretrained(str(path), output_loading_info=True)
    except Exception as e:  # noqa: BLE001
        raise BiopruneError(f"{path}: could not load {name} weights ({type(e).__name__}: {e})") from None
    missing = [k for k in info.get("missing_keys", []) if not k.endswith("decoder.weight")]
    unexpected = [k for k in info.get("unexpected_keys", []) if not k.startswith(DROPPABLE) and "position_ids" not in k]
    if missing or unexpected:
        raise BiopruneError(f"{path}: weights do not fit {name} (missing {sorted(missing)[:4]}, "
                            f"unexpected {sorted(unexpected)[:4]})")
    if net.config.vocab_size < max(vocab.values()) + 1:
        raise BiopruneError(f"{path}: tokenizer has {max(vocab.values()) + 1} tokens, model vocab_size {net.config.vocab_size}")
    return HFMaskedLM(net.eval(), name, molecule, vocab, specials, source=str(path))


def rebuild_hf(arch: dict, source: str) -> HFMaskedLM:
    """An HFMaskedLM with fresh weights from `arch` (models.arch_of of one); the caller loads the state dict."""
    tf = _transformers()
    cls = getattr(tf, arch["class"])
    cfg = cls.config_class.from_dict(dict(arch["config"]))
    with torch.random.fork_rng(devices=[]):
        net = cls(cfg)
    return HFMaskedLM(net.eval(), arch["class"], arch["molecule"], arch["vocab"], arch["specials"], source)

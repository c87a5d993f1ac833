"""k-mer baselines (bioprune.benchmarks.kmer): the interpolated Witten-Bell model against probabilities
computed by hand on a constructed corpus, the corruption posterior, and the masks it scores on."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bioprune.benchmarks.kmer import (KmerModel, corruption_likelihood, kmer_profiles, masked_cross_entropy,
                                      masked_positions)
from bioprune.errors import BiopruneError

# Corpus "AAC", "CAA" over letters A (0), C (1). Unigram: A 4, C 2 (N 6, T 2) so, interpolated with the
# uniform 1/2: P0(A) = (4 + 2/2) / 8 = 5/8, P0(C) = 3/8.
A, C = 0, 1
P0 = np.array([5 / 8, 3 / 8])


def model(h: int = 1) -> KmerModel:
    return KmerModel("AC", h).fit(["AAC", "CAA"])


def arr(*v):
    return np.array(v, dtype=np.int64)


def test_unigram_is_witten_bell_over_uniform():
    p = model(1).predict([arr()], [arr()])
    assert np.allclose(p, [P0])
    assert np.allclose(model(0).predict([arr(A)], [arr(A)]), [P0])  # h 0 ignores any context


def test_two_sided_context_by_hand():
    m = model(1)
    # context A_C: seen once, with x = A (C 1, T 1): P(A) = (1 + 5/8) / 2 = 13/16, P(C) = (0 + 3/8) / 2 = 3/16
    # context A_A: never seen -> falls back to the unigram
    p = m.predict([arr(A), arr(A)], [arr(C), arr(A)])
    assert np.allclose(p[0], [13 / 16, 3 / 16])
    assert np.allclose(p[1], P0)


def test_one_sided_contexts_near_masks_and_ends():
    m = model(1)
    # only a right neighbour A: training contexts (0 left, 1 right) with right A: x = A twice, C once
    # (C 3, T 2): P(A) = (2 + 2 * 5/8) / 5 = 0.65, P(C) = (1 + 2 * 3/8) / 5 = 0.35
    p = m.predict([arr()], [arr(A)])
    assert np.allclose(p[0], [0.65, 0.35])
    # only a left neighbour C: seen once with x = A: (1 + 5/8) / 2
    p = m.predict([arr(C)], [arr()])
    assert np.allclose(p[0], [13 / 16, 3 / 16])


def test_second_order_interpolates_with_first():
    # h 2, query A A _ C (two left, one right: the right side ends): chain (0,0) -> (1,1) A_C -> (2,1) AA_C
    m = KmerModel("AC", 2).fit(["AAC", "CAA", "AAAC"])
    # recount by hand for the new corpus: unigram A 7, C 3 (N 10, T 2): P0 = ((7 + 1) / 12, (3 + 1) / 12)
    p0 = np.array([8 / 12, 4 / 12])
    # (1,1) A_C: "AAC" pos1 -> A; "AAAC" pos2 -> A  (C 2, T 1): P1(A) = (2 + p0A) / 3
    p1 = np.array([(2 + p0[0]) / 3, (0 + p0[1]) / 3])
    # (2,1) AA_C: "AAAC" pos2 (left A A, right C) -> A (C 1, T 1): P2 = (1[x=A] + p1) / 2
    p2 = np.array([(1 + p1[0]) / 2, p1[1] / 2])
    p = m.predict([arr(A, A)], [arr(C)])
    assert np.allclose(p[0], p2)
    assert np.allclose(m.predict([arr(A, A)], [arr(C)], h=1)[0], p1)
    assert np.isclose(p.sum(), 1.0)


def test_corruption_posterior_by_hand():
    lik = corruption_likelihood("AC", "AC")
    assert np.allclose(lik[:, 2], 0.8)  # <mask> says nothing about the residue
    assert np.allclose(lik[:, :2], [[0.15, 0.05], [0.05, 0.15]])  # kept 0.1 + random 0.1 x 1/2
    m = model(1)
    # context A_C, prior (13/16, 3/16); observed C: posterior C = 3/16*0.15 / (13/16*0.05 + 3/16*0.15)
    post_c = (3 / 16 * 0.15) / (13 / 16 * 0.05 + 3 / 16 * 0.15)
    ce = masked_cross_entropy(m, [(arr(A), arr(C), C, C)])
    assert math.isclose(ce, -math.log(post_c))
    ce_mask = masked_cross_entropy(m, [(arr(A), arr(C), 2, A), (arr(), arr(), 2, C)])
    assert math.isclose(ce_mask, -(math.log(13 / 16) + math.log(3 / 8)) / 2)


def test_masked_positions_are_the_mlm_masks():
    from bioprune.alphabets import get_alphabet
    from bioprune.training.batching import mask_by_id, pad_batch

    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGU"), n)) for n in (12, 40, 75, 33)]
    ids = [f"s{i}" for i in range(len(seqs))]
    pos = masked_positions(ids, seqs, "rna", seed=0)
    inputs, targets = mask_by_id(pad_batch(seqs, "rna"), ids, "rna", 0)
    assert len(pos) == int((targets != -100).sum())
    alpha = get_alphabet("rna")
    mask_idx = alpha.mask_idx
    k = 0
    for r, s in enumerate(seqs):
        for i in torch.nonzero(targets[r] != -100)[:, 0].tolist():
            left, right, obs, true = pos[k]
            k += 1
            assert "ACGUN"[true] == s[i - 1]  # token i is residue i - 1 (BOS first)
            assert (obs == 5) == (int(inputs[r, i]) == mask_idx)
            # the visible context stops at the next masked token or the sequence end
            j = i - 1 - len(left)
            assert j == 0 or int(inputs[r, j]) == mask_idx
            seen = [alpha.get_tok(int(t)) for t in inputs[r]]  # the corrupted input the MLM sees
            assert ["ACGUN"[v] for v in left] == seen[i - len(left) : i]
            assert ["ACGUN"[v] for v in right] == seen[i + 1 : i + 1 + len(right)]


def test_bad_letters_and_profiles():
    with pytest.raises(BiopruneError, match="outside"):
        KmerModel("AC", 1).fit(["AXC"])
    prof = kmer_profiles(["AAAA", "ACGU"], "rna")
    assert prof.shape == (2, 64)
    assert prof[0, 0] == 1.0  # AAA, twice out of two 3-mers
    assert np.isclose(prof[1].sum(), 1.0)


# --- the degenerate control (selections.kmer_entropy / select_degenerate) ----------------------------

def test_kmer_entropy_by_hand():
    from bioprune.selection.strategies import kmer_entropy

    e = kmer_entropy(["AAAAAA", "ACACAC", "ACGUACGU", "AC", "ANNA"], 2, "ACGU")
    # AAAAAA: one 2-mer -> 0 bits; ACACAC: AC x3, CA x2 -> H(3/5, 2/5); ACGUACGU: AC 2, CG 2, GU 2, UA 1
    h = lambda *c: -sum(x / sum(c) * math.log2(x / sum(c)) for x in c)  # noqa: E731
    assert np.allclose(e, [0.0, h(3, 2), h(2, 2, 2, 1), 0.0, 0.0])  # "AC": one 2-mer; "ANNA": none valid
    with pytest.raises(BiopruneError, match="selection.degenerate.k"):
        kmer_entropy(["ACGU"], 0, "ACGU")


def test_degenerate_takes_the_lowest_complexity_of_a_constructed_pool():
    from bioprune.selection.strategies import kmer_entropy, select_indices

    rng = np.random.default_rng(1)
    pool = ["".join(rng.choice(list("ACGU"), 60)) for _ in range(40)]
    repeats = {3: "AU" * 30, 17: "GCG" * 20, 29: "A" * 60, 35: "GGAU" * 15}  # low-complexity members
    for i, s in repeats.items():
        pool[i] = s
    ent = kmer_entropy(pool, 3, "ACGU")
    picked = select_indices("degenerate", {"complexity": ent}, len(pool), 0.1, seed=0)
    assert sorted(picked.tolist()) == sorted(repeats)  # budget 10% of 40 = 4: exactly the repeats
    again = select_indices("degenerate", {"complexity": ent}, len(pool), 0.1, seed=7)
    assert picked.tolist() == again.tolist()  # no random draw: the same set for every seed
    with pytest.raises(BiopruneError, match="complexity"):
        select_indices("degenerate", {"score": ent}, len(pool), 0.1, seed=0)


def test_validation_slice_and_h_choice_on_a_small_pool():
    from bioprune.benchmarks.kmer import fit_kmer_baseline, validation_split

    ids = [f"r{i}" for i in range(30)]
    val = validation_split(ids)
    assert 1 <= val.sum() < len(ids)  # never empty, never everything
    assert validation_split(ids).tolist() == val.tolist()  # a property of the ids alone
    rng = np.random.default_rng(3)
    motif = "".join(rng.choice(list("ACGU"), 12))
    seqs = [motif * 4 + "".join(rng.choice(list("ACGU"), 10)) for _ in ids]  # a repeated motif: context pays
    model, losses = fit_kmer_baseline(ids, seqs, "rna", max_val=10, h_max=3)
    assert set(losses) == {0, 1, 2, 3} and model.h == min(losses, key=lambda h: (losses[h], h))
    assert losses[model.h] < losses[0]
    with pytest.raises(BiopruneError, match="validation slice"):
        fit_kmer_baseline(["only"], ["ACGU"], "rna", max_val=10)


@pytest.mark.requires_tool("mmseqs")
def test_validation_filter_chooses_h_on_sequences_without_a_near_copy_in_the_fit_data():
    """Validation sequences with a near-copy in the fit data are not used to choose h (the held-out
    filter's rule): the losses equal those of the same corpus without them."""
    import random

    from bioprune.benchmarks.kmer import fit_kmer_baseline, validation_split

    rng = random.Random(3)

    def rand_seq():
        return "".join(rng.choice("ACGU") for _ in range(150))

    def variant(s):  # about 97% identical
        return "".join(rng.choice("ACGU") if rng.random() < 0.03 else c for c in s)

    families = [rand_seq() for _ in range(20)]
    ids = [f"s{i}" for i in range(1500)]
    val = validation_split(ids)
    seqs = [variant(families[i % 20]) for i in range(len(ids))]  # fit data: 20 families of near-copies
    v_idx = [i for i, v in enumerate(val) if v]
    assert len(v_idx) >= 10
    for i in v_idx[len(v_idx) // 2:]:  # half the slice: novel sequences; the other half family members
        seqs[i] = rand_seq()
    from bioprune.leakage import GateConfig

    vf = GateConfig(molecule="rna", max_identity=0.9, min_coverage=0.8)
    _, plain = fit_kmer_baseline(ids, seqs, "rna", 250, h_max=3)
    _, clean = fit_kmer_baseline(ids, seqs, "rna", 250, h_max=3, validation_filter=vf)
    # the same corpus without the validation slice's family members: h is chosen on the novel half alone
    near = set(v_idx[: len(v_idx) // 2])
    keep = [i for i in range(len(ids)) if i not in near]
    _, novel_only = fit_kmer_baseline([ids[i] for i in keep], [seqs[i] for i in keep], "rna", 250, h_max=3)
    assert clean == pytest.approx(novel_only, rel=1e-12)
    assert plain != pytest.approx(clean, rel=1e-3)  # without the filter the near-copies weigh in

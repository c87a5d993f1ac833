"""Metric code on hand-made inputs: base-pair F1, Q3/Q8 accuracy, DSSP mapping, confidence intervals."""
from __future__ import annotations

import math

import numpy as np
import pytest

from bioprune.benchmarks import decode_pairs, ss_split
from bioprune.benchmarks.metrics import dotbracket_pairs, dssp_to_ss3, mean_ci, pair_f1, residue_accuracy
from bioprune.resources import wuss_pairs


def test_pair_f1_hand_made():
    true = {(0, 10), (1, 9), (2, 8), (3, 7)}
    assert pair_f1(true, true) == 1.0
    assert pair_f1({(0, 10), (1, 9)}, true) == pytest.approx(2 * 1.0 * 0.5 / 1.5)  # P=1, R=0.5
    assert pair_f1({(10, 0), (4, 6)}, true) == pytest.approx(2 * 0.5 * 0.25 / 0.75)  # order-free
    assert pair_f1(set(), true) == 0.0
    assert pair_f1(set(), set()) == 1.0


def test_dotbracket_and_wuss():
    assert dotbracket_pairs("((..))") == {(0, 5), (1, 4)}
    p = wuss_pairs("<<..>>.AA..aa")
    assert p[0] == 5 and p[1] == 4 and p[7] == 12 and p[8] == 11


def test_decode_pairs_each_base_once():
    ii, jj = np.array([0, 0, 1]), np.array([5, 6, 5])
    assert decode_pairs(ii, jj, np.array([0.9, 0.8, 0.7])) == {(0, 5)}
    assert decode_pairs(ii, jj, np.array([0.4, 0.3, 0.2])) == set()


def test_q3_q8():
    assert dssp_to_ss3("HGIEBTS-C") == "HHHEECCCC"
    assert residue_accuracy(np.array(list("HHEC")), np.array(list("HECC"))) == 0.5
    with pytest.raises(ValueError):
        residue_accuracy(np.array([]), np.array([]))


def test_mean_ci_matches_t_interval():
    m, lo, hi = mean_ci([1.0, 2.0, 3.0])
    half = 4.302652729911275 * 1.0 / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(n)
    assert m == 2.0 and lo == pytest.approx(2 - half) and hi == pytest.approx(2 + half)
    assert mean_ci([5.0]) == (5.0, 5.0, 5.0)
    assert all(math.isnan(x) for x in mean_ci([]))


def test_ss_split_is_by_family():
    rows = [{"label": f"f{i % 6}", "id": str(i)} for i in range(60)]
    train, test = ss_split(rows, [])
    assert {r["label"] for r in train}.isdisjoint({r["label"] for r in test}) and test
    train, test = ss_split(rows, ["f1"])
    assert {r["label"] for r in test} == {"f1"}

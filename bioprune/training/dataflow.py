"""Training batches for the device: a step schedule (fixed-count or token-budget batches), token
accounting for the `tokens` budget, and a background prefetcher that pads batches ahead of the step.

Tokens of a sequence = residues + BOS + EOS (what the model reads; padding is not counted).
Token-budget batches (`max_tokens`): every batch's padded size, rows x longest row, is <= max_tokens;
sequences are drawn in a permutation seeded by (seed, epoch), sorted by length within pools of about
50 batches, cut greedily, and the batch order is shuffled with the same generator, so each epoch
covers every sequence exactly once and the order depends only on (seed, epoch) (resumable).
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from bioprune.errors import BiopruneError

POOL_BATCHES = 50


def seq_tokens(lengths: np.ndarray) -> np.ndarray:
    """Tokens the model reads per sequence (residues + BOS + EOS)."""
    return np.asarray(lengths, dtype=np.int64) + 2


def count_batches(epoch: int, lengths: np.ndarray, seed: int, batch_size: int,
                  pool: int = POOL_BATCHES) -> list[np.ndarray]:
    """Fixed-count batches (`batch_size` sequences): see bioprune.training.loop.epoch_batches."""
    n = len(lengths)
    rng = np.random.default_rng([seed, epoch])
    perm = rng.permutation(n)
    chunk = batch_size * pool
    batches = []
    for i in range(0, n, chunk):
        part = perm[i : i + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += [part[j : j + batch_size] for j in range(0, len(part), batch_size)]
    order = rng.permutation(len(batches))
    return [batches[k] for k in order]


def check_max_tokens(lengths: np.ndarray, max_tokens: int, key: str) -> None:
    longest = int(seq_tokens(lengths).max()) if len(lengths) else 0
    if longest > max_tokens:
        raise BiopruneError(f"config key {key}: {max_tokens} is below the longest sequence "
                            f"({longest} tokens incl. BOS/EOS); raise it or lower corpus.max_length")


def cut_by_tokens(order: np.ndarray, lengths: np.ndarray, max_tokens: int) -> list[np.ndarray]:
    """Cut `order` (already sorted by length) greedily into batches of padded size <= max_tokens."""
    tok = seq_tokens(lengths)
    out, start, longest = [], 0, 0
    for j, i in enumerate(order):
        longest_new = max(longest, int(tok[i]))
        if j > start and longest_new * (j - start + 1) > max_tokens:
            out.append(order[start:j])
            start, longest_new = j, int(tok[i])
        longest = longest_new
    if start < len(order):
        out.append(order[start:])
    return out


def token_batches(epoch: int, lengths: np.ndarray, seed: int, max_tokens: int) -> list[np.ndarray]:
    """Token-budget batches of one epoch (module doc)."""
    rng = np.random.default_rng([seed, epoch])
    perm = rng.permutation(len(lengths))
    cum = np.cumsum(seq_tokens(lengths)[perm])
    pool_of = cum // (max_tokens * POOL_BATCHES)
    batches: list[np.ndarray] = []
    for p in np.unique(pool_of):
        part = perm[pool_of == p]
        batches += cut_by_tokens(part[np.argsort(lengths[part], kind="stable")], lengths, max_tokens)
    order = rng.permutation(len(batches))
    return [batches[k] for k in order]


@dataclass
class BatchPlan:
    """The step -> batch schedule of a run: epochs of batches, concatenated, cut at the budget."""

    lengths: np.ndarray
    seed: int
    batch_size: int
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        self.lengths = np.asarray(self.lengths)
        self._cache: dict[int, list[np.ndarray]] = {}
        if self.max_tokens:
            check_max_tokens(self.lengths, self.max_tokens, "pretrain.max_tokens")

    def epoch(self, e: int) -> list[np.ndarray]:
        if e not in self._cache:
            self._cache = {e: (token_batches(e, self.lengths, self.seed, self.max_tokens) if self.max_tokens
                               else count_batches(e, self.lengths, self.seed, self.batch_size))}
        return self._cache[e]

    def steps(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, int, np.ndarray]]:
        """(step, epoch, indices) for steps start..stop-1 (endless when stop is None)."""
        step, e = 0, 0
        while stop is None or step < stop:
            bs = self.epoch(e)
            if step + len(bs) <= start:
                step += len(bs)
            else:
                for b in bs:
                    if step >= start and (stop is None or step < stop):
                        yield step, e, b
                    step += 1
            e += 1

    def total_steps(self, budget: str, epochs: int, steps: int, tokens: int) -> int:
        """Optimizer steps under the budget: `epochs` full epochs, `steps` steps, or the first step at
        which the tokens seen reach `tokens`."""
        if budget == "steps":
            return int(steps)
        if budget == "epochs":
            return sum(len(self.epoch(e)) for e in range(int(epochs)))
        if budget == "tokens":
            if tokens < 1:
                raise BiopruneError("config key pretrain.tokens must be >= 1 when pretrain.budget is tokens")
            tok, seen = seq_tokens(self.lengths), 0
            for step, _, b in self.steps():
                seen += int(tok[b].sum())
                if seen >= tokens:
                    return step + 1
        raise BiopruneError(f"config key pretrain.budget: {budget!r} is not one of epochs, steps, tokens")

    def token_counts(self, total: int) -> dict:
        """tokens_seen (with repeats) and unique_tokens (of the distinct sequences) of steps 0..total-1."""
        tok = seq_tokens(self.lengths)
        seen_seq = np.zeros(len(tok), dtype=bool)
        seen = 0
        for _, _, b in self.steps(0, total):
            seen += int(tok[b].sum())
            seen_seq[b] = True
        return {"tokens_seen": seen, "unique_tokens": int(tok[seen_seq].sum()),
                "unique_sequences": int(seen_seq.sum())}


class Prefetcher:
    """Iterate `make(item)` for `items` in order, computed `depth` items ahead in a background thread.

    `make` does host work only (no random draws), so the batches are exactly those of the plain loop;
    an exception in the thread is raised in the consumer.
    """

    _END = object()

    def __init__(self, items: Iterable, make: Callable, depth: int = 2):
        self._q: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._work, args=(iter(items), make), daemon=True)
        self._t.start()

    def _work(self, it: Iterator, make: Callable) -> None:
        try:
            for item in it:
                if self._stop.is_set():
                    return
                self._q.put(("ok", make(item)))
            self._q.put(("ok", self._END))
        except BaseException as e:  # noqa: BLE001 - re-raised in the consumer
            self._q.put(("err", e))

    def __iter__(self):
        return self

    def __next__(self):
        kind, val = self._q.get()
        if kind == "err":
            raise val
        if val is self._END:
            raise StopIteration
        return val

    def close(self) -> None:
        self._stop.set()
        while self._t.is_alive():  # drain so a blocked put returns
            try:
                self._q.get(timeout=0.05)
            except queue.Empty:
                pass


def host_batch(seqs: list[str], molecule: str, idx: np.ndarray, pin: bool) -> torch.Tensor:
    """Padded token ids of one batch on the host (pinned for an asynchronous copy when `pin`)."""
    from bioprune.training.batching import pad_batch

    toks = pad_batch([seqs[j] for j in idx], molecule)
    return toks.pin_memory() if pin else toks

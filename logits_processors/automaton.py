"""Aho-Corasick over token ids: which next tokens would complete a forbidden sequence."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import numpy as np

EMPTY = np.zeros(0, dtype=np.int64)


class TokenAutomaton:
    """Multi-pattern matcher; a request's state is one node id, advanced one token at a time.

    `banned(node)` is precomputed for every node: the tokens whose transition lands on a node
    whose output set is non-empty, i.e. that would complete some forbidden sequence (a suffix
    of the tokens so far plus that token). Cost per step: one dict lookup per failure hop.
    """

    def __init__(self, sequences: Iterable[Iterable[int]]):
        self.children: list[dict[int, int]] = [{}]
        self.terminal: list[bool] = [False]
        self.max_len = 0
        for seq in sequences:
            seq = tuple(seq)
            if not seq:
                continue
            self.max_len = max(self.max_len, len(seq))
            node = 0
            for tok in seq:
                nxt = self.children[node].get(tok)
                if nxt is None:
                    nxt = len(self.children)
                    self.children[node][tok] = nxt
                    self.children.append({})
                    self.terminal.append(False)
                node = nxt
            self.terminal[node] = True
        self.fail = [0] * len(self.children)
        self._banned: list[np.ndarray] = [EMPTY] * len(self.children)
        self._build()

    def _build(self) -> None:
        # BFS order guarantees fail[node] (shallower) is complete before node.
        order: list[int] = []
        queue = deque()
        for child in self.children[0].values():
            queue.append(child)
        while queue:
            node = queue.popleft()
            order.append(node)
            for tok, child in self.children[node].items():
                f = self.fail[node]
                while f and tok not in self.children[f]:
                    f = self.fail[f]
                cand = self.children[f].get(tok, 0)
                self.fail[child] = cand if cand != child else 0
                self.terminal[child] = self.terminal[child] or self.terminal[self.fail[child]]
                queue.append(child)
        for node in [0, *order]:
            own = {t for t, c in self.children[node].items() if self.terminal[c]}
            inherited = self._banned[self.fail[node]] if node else EMPTY
            merged = own.union(inherited.tolist())
            self._banned[node] = np.array(sorted(merged), dtype=np.int64) if merged else EMPTY

    @property
    def num_nodes(self) -> int:
        return len(self.children)

    def step(self, node: int, token: int) -> int:
        while node and token not in self.children[node]:
            node = self.fail[node]
        return self.children[node].get(token, 0)

    def feed(self, node: int, tokens: Iterable[int]) -> int:
        for tok in tokens:
            node = self.step(node, tok)
        return node

    def banned(self, node: int) -> np.ndarray:
        return self._banned[node]

    def matched(self, node: int) -> bool:
        """True when the tokens so far end with a forbidden sequence."""
        return self.terminal[node]

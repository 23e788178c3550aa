"""Aho-Corasick over folded text (`logits_processors.fold`), for many targets' names at once.

Nodes are ints; the goto function is one flat dict keyed by `node << 7 | symbol`, so 10,000
targets' names cost a few arrays and one dict, not a dict per node. Patterns are kept sorted:
the patterns below a node (those its path begins) are one slice of them, which is how the
watch finds, for a node, every rest of a name that the next token may complete.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable

from logits_processors.fold import BREAK, OUTSIDE, UNSURE, letter_count, moves

# Where a reading of marked text stands: a node, whether the text read so far ends at a word
# break, and how the run of marks it is in (if any) is read (`logits_processors.fold.step`).
# A text with marks is read every way at once: a set of them (`States`).
State = tuple[int, bool, int]
States = frozenset[State]

SHIFT = 7  # symbols are ASCII


class FoldedAutomaton:
    """Multi-pattern matcher over folded text; `refuse[i]` tells pattern i's policy."""

    def __init__(self, patterns: Iterable[tuple[str, bool]], contextual: Iterable[str] = ()):
        """`contextual` patterns (a name's part alone: "springsteen") never match by
        themselves: the watch decides from the words before them whether they name the
        target (`Watch`), and only where their last token is still to be written."""
        policy: dict[str, bool] = {}
        for pattern, refuse in patterns:
            if pattern:
                policy[pattern] = policy.get(pattern, False) or refuse
        self.patterns: list[str] = sorted(policy)
        self.refuse: list[bool] = [policy[p] for p in self.patterns]
        alone = set(contextual)
        self.contextual = array("b", [p in alone for p in self.patterns])
        self.max_len = max(map(len, self.patterns), default=0)
        self.letters = array("i", [letter_count(p) for p in self.patterns])
        self.index = {p: i for i, p in enumerate(self.patterns)}
        self.goto: dict[int, int] = {}
        # Per node: depth, first and end index of the patterns it begins, whether some
        # pattern ends here or at a node of its fail chain (a match), and the fail link.
        self.depth = array("i", [0])
        self.lo = array("i", [0])
        self.hi = array("i", [len(self.patterns)])
        self.ends = array("b", [0])
        self.alone = array("b", [0])  # a contextual pattern ends here or on the fail chain
        self.fail = array("i", [0])
        self._insert()
        self._link()

    @property
    def start(self) -> States:
        """Where a text stands before its first word: after a word break."""
        return frozenset({(self._goto(0, ord(BREAK)), True, OUTSIDE)})

    @property
    def num_nodes(self) -> int:
        return len(self.depth)

    def _insert(self) -> None:
        parents = array("i", [0])
        symbols = array("i", [0])
        for index, pattern in enumerate(self.patterns):
            node = 0
            for sym in pattern:
                key = node << SHIFT | ord(sym)
                child = self.goto.get(key)
                if child is None:
                    child = self.goto[key] = len(self.depth)
                    self.depth.append(self.depth[node] + 1)
                    self.lo.append(index)
                    self.hi.append(index + 1)
                    self.ends.append(0)
                    self.alone.append(0)
                    self.fail.append(0)
                    parents.append(node)
                    symbols.append(ord(sym))
                else:
                    self.hi[child] = index + 1
                node = child
            self.ends[node] = int(not self.contextual[index])
            self.alone[node] = self.contextual[index]
        self._parents, self._symbols = parents, symbols

    def _link(self) -> None:
        # Children are numbered after their parents, so by depth order every fail link a
        # node needs (of a shallower node) is already set.
        order = sorted(range(1, len(self.depth)), key=self.depth.__getitem__)
        for node in order:
            parent, sym = self._parents[node], self._symbols[node]
            if parent:
                self.fail[node] = self._goto(self.fail[parent], sym)
            if self.ends[self.fail[node]]:
                self.ends[node] = 1
            if self.alone[self.fail[node]]:
                self.alone[node] = 1
        del self._parents, self._symbols

    def _goto(self, node: int, sym: int) -> int:
        while True:
            child = self.goto.get(node << SHIFT | sym)
            if child is not None:
                return child
            if not node:
                return 0
            node = self.fail[node]

    def feed(self, node: int, text: str, parts: bool = False) -> tuple[int, bool]:
        """The node after `text`, and whether a pattern ended on the way (a contextual one
        too, with `parts`)."""
        matched = False
        for sym in text:
            node = self._goto(node, ord(sym))
            matched = matched or bool(self.ends[node] or parts and self.alone[node])
        return node, matched

    def read(self, states: States, marked: str, parts: bool = False) -> tuple[States, bool]:
        """Where marked text (`logits_processors.fold.mark`) leaves each of `states`, every
        run of marks read every way (`logits_processors.fold.moves`), and whether a pattern
        ended on the way in some reading (a contextual one too, with `parts`); not in a word
        of marks read as letters alone."""
        matched = False
        ends, alone = self.ends, self.alone
        for symbol in marked:
            grown = set()
            for node, gap, run in states:
                for choice, way in moves(gap, run, symbol):
                    if not choice or choice == BREAK and gap:  # nothing, or no second break
                        grown.add((node, gap or choice == BREAK, way))
                        continue
                    node_after = self._goto(node, ord(choice))
                    grown.add((node_after, choice == BREAK, way))
                    if way != UNSURE:
                        matched = matched or bool(ends[node_after] or parts and alone[node_after])
            states = frozenset(grown)
        return states, matched

    def read_tail(self, marked: str) -> tuple[States, bool]:
        """`read` from the start over a marked text's tail (a prompt's, a context's): no
        pattern is longer than `max_len`, so twice that holds any name still open at its end
        with room for marks read as nothing."""
        return self.read(self.start, marked[-2 * self.max_len :])

    def chain(self, node: int) -> Iterable[int]:
        """The node and its fail chain, root excluded: every suffix of the text so far
        that begins some pattern."""
        while node:
            yield node
            node = self.fail[node]

    def rests(self, node: int) -> Iterable[tuple[int, str]]:
        """What completes each pattern that `node`'s path begins: (its index, the rest)."""
        depth = self.depth[node]
        for i in range(self.lo[node], self.hi[node]):
            rest = self.patterns[i][depth:]
            if rest:
                yield i, rest

    def path(self, node: int) -> str:
        """What `node`'s path writes (the start of the patterns below it)."""
        return self.patterns[self.lo[node]][: self.depth[node]] if node else ""

    def letters_at(self, node: int) -> int:
        """How many letters `node`'s path has (its word breaks not counted)."""
        if not node:
            return 0
        return letter_count(self.patterns[self.lo[node]][: self.depth[node]])

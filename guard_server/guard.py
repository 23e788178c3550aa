"""The guard's per-request decision: which forget targets a request asks for, and what to do."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from guard_server import metrics
from logits_processors.fold import (
    BREAK,
    MARK_LETTERS,
    RISE,
    fold,
    letter_count,
    mark,
    readings,
)
from logits_processors.params import ACTION_KEY, GUARD_KEYS, TARGETS_KEY

if TYPE_CHECKING:
    from classifiers.associations import AssociationIndex
    from classifiers.detector import Detector
    from guard_server.store import TargetStore
    from logits_processors.watch_automaton import States

HEADER = "x-guard-targets"


@dataclass(frozen=True)
class Flag:
    """One forget target a request was found to ask for."""

    target_id: str
    version: int
    score: float
    evidence: str = ""
    name: str = ""  # the target's registered name


@dataclass(frozen=True)
class Verdict:
    """What detection decided for one request."""

    flags: tuple[Flag, ...] = ()
    action: str = "none"  # "none" | "refuse" | "restrict" | "partial"
    keep: tuple[str, ...] = ()  # partial: the last turn's clauses that ask something else
    answer: bool = False  # the answer watch refused the answer (it was about to name a target)

    @property
    def flagged(self) -> bool:
        return bool(self.flags)

    def xargs(self) -> dict[str, Any]:
        # Targets travel as "<id>@<version>": the worker loads exactly that compiled version,
        # so a PATCH never changes what a request already in flight is restricted by.
        if not self.flagged:
            return {}
        return {
            TARGETS_KEY: [f"{f.target_id}@{f.version}" for f in self.flags],
            ACTION_KEY: self.action,
        }

    def header(self) -> str:
        return ",".join(f.target_id for f in self.flags)

    def report(self, admin: bool = False) -> dict[str, Any]:
        """What a response says about the guard. Which target matched, how strongly and on
        what evidence is for an admin only: a client could tune an evasion against it."""
        report: dict[str, Any] = {"flagged": self.flagged or self.answer, "action": self.action}
        if admin:
            report["targets"] = [
                {
                    "id": f.target_id,
                    "name": f.name,
                    "version": f.version,
                    "score": round(f.score, 4),
                    "evidence": f.evidence,
                }
                for f in self.flags
            ]
        if self.keep:
            report["answered"] = list(self.keep)
        if admin and self.answer:
            report["answer_watch"] = True
        return report

    def refusing_answer(self, named: tuple[Flag, ...]) -> Verdict:
        """This verdict once the answer watch refused the answer; `named` are the targets
        its written part names, where the screen finds them (the name itself never got
        written, so there may be none)."""
        flags = {f.target_id: f for f in (*self.flags, *named)}
        return Verdict(tuple(flags.values()), "refuse", answer=True)

    def without_partial(self) -> Verdict:
        """Where the forgotten clauses cannot be cut out of a prompt, the request is refused.
        Never a weaker restrict: its bans and penalties let an answer to them through."""
        return replace(self, action="refuse", keep=()) if self.action == "partial" else self


_SEVERITY = {"none": 0, "partial": 1, "restrict": 2, "refuse": 3}


def merge(first: Verdict, second: Verdict) -> Verdict:
    """One verdict for a request that ran several prompts (a list of prompts, beam search's
    steps): the strongest action, every target either found."""
    if not second.flagged and not second.answer:
        return first
    if not first.flagged and not first.answer:
        return second
    flags = {f.target_id: f for f in (*first.flags, *second.flags)}
    action = max(first.action, second.action, key=_SEVERITY.__getitem__)
    keep = tuple(dict.fromkeys((*first.keep, *second.keep))) if action == "partial" else ()
    return Verdict(tuple(flags.values()), action, keep, first.answer or second.answer)


def apply_verdict(xargs: dict[str, Any] | None, verdict: Verdict) -> dict[str, Any] | None:
    """The request's vllm_xargs with the guard's keys set from the verdict alone.

    Client-sent guard keys are dropped: only detection decides who is restricted, so an
    unflagged request reaches the engine exactly as an unguarded server would see it.
    """
    cleaned = {k: v for k, v in (xargs or {}).items() if k not in GUARD_KEYS}
    cleaned.update(verdict.xargs())
    return cleaned or None


def conversation_texts(messages: Iterable[Any]) -> list[str]:
    """Every turn's text, oldest first (user, assistant, system and tool turns alike).

    Every string of a message counts, whatever holds it: content parts of any type ("text",
    "input_text", "refusal", "thinking", a bare string), reasoning, tool-call arguments. The
    chat template may render any of them.
    """
    texts: list[str] = []
    for message in messages:
        if isinstance(message, dict):
            texts.extend(_strings({k: v for k, v in message.items() if k != "role"}))
    return [t for t in texts if t.strip()]


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    if isinstance(value, dict):
        return [s for key, item in value.items() if key != "type" for s in _strings(item)]
    return []


class Guard:
    """Screens requests against the registry's active targets, kept in sync with the store.

    Every screen first compares the store's write generation with the one it last loaded:
    a registration committed by this replica or any other is seen by the next request.
    """

    def __init__(self, store: TargetStore | None = None, detector: Detector | None = None):
        self.store = store
        self.detector = detector
        self.names = NameIndex()
        self._live: dict[str, Any] = {}
        self._documented: dict[tuple[str, int], list[str]] = {}
        self._generations = (-1, -1)
        self._sync_lock = threading.Lock()

    def sync(self) -> None:
        if self.store is None or self.detector is None:
            return
        generations = self.store.generations()
        if generations == self._generations:
            return
        with self._sync_lock:
            if generations == self._generations:
                return
            if generations[0] != self._generations[0]:
                self._sync_targets()
            self.detector.associations = self._associations(self._live)
            self._generations = generations

    def _sync_targets(self) -> None:
        assert self.store is not None and self.detector is not None
        live = {row.id: row for row in self.store.every() if _guarded(row)}
        for target_id in set(self.detector.targets) - set(live):
            self.detector.remove_target(target_id)
        changed = [
            (row.id, row.version, row.spec)
            for row in live.values()
            if (known := self.detector.targets.get(row.id)) is None or known.version != row.version
        ]
        for start in range(0, len(changed), 256):
            self.detector.add_targets(changed[start : start + 256])
        self.names = NameIndex(live.values())
        self._live = live

    def _associations(self, live: dict[str, Any]) -> AssociationIndex:
        """Each live target's associations: from its documents, and what the served model
        said about its version (`guard_server.learner`)."""
        from classifiers.associations import AssociationIndex

        assert self.store is not None
        learned = self.store.learned()
        known, self._documented = self._documented, {}
        found = {}
        for row in live.values():
            key = (row.id, row.version)
            phrases = known[key] if key in known else documented(row.spec)
            self._documented[key] = phrases
            got = learned.get(row.id)
            if got is not None and got.version == row.version:
                phrases = [*phrases, *got.phrases]
            found[row.id] = phrases
        return AssociationIndex(found)

    def screen(self, texts: list[str]) -> Verdict:
        return self.screen_many([texts])[0]

    def begun(self, context: str, candidates: list[str]) -> list[bool]:
        """For each candidate continuation of `context` (a scoring label, a token): whether
        it writes part of a registered name there ("Hog" after "goes to a school called").
        Asking its probability asks the forgotten answer."""
        self.sync()
        return self.names.begun(context, candidates)

    def completing(self, items: list[tuple[str, list[str]]]) -> list[list[bool]]:
        """`NameIndex.completing` over the active targets' names."""
        self.sync()
        return self.names.completing(items)

    def has_targets(self) -> bool:
        """Whether any target is enforced now (after catching up with the store)."""
        self.sync()
        return self.detector is not None and bool(self.detector.targets)

    def screen_many(self, conversations: list[list[str]]) -> list[Verdict]:
        """Verdicts for several requests, detected together (one encoder call)."""
        if self.detector is None:
            return [Verdict() for _ in conversations]
        self.sync()
        return [_verdict(m, o) for m, o in self.detector.screen_many(conversations)]


def documented(spec: dict[str, Any]) -> list[str]:
    """The associations the operator's documents state ("Luke Skywalker", "Star Wars")."""
    from classifiers.associations import extract

    names = [spec["name"], *spec.get("aliases", [])]
    phrases = [p for document in spec.get("documents", []) for p in extract(document, names)]
    return list(dict.fromkeys(phrases))


def _verdict(matches: list[Any], others: list[str]) -> Verdict:
    if not matches:
        return Verdict()
    action, keep = decide({m.policy for m in matches}, others)
    flags = tuple(Flag(m.target_id, m.version, m.score, m.evidence, m.name) for m in matches)
    return Verdict(flags, action, keep)


_WHY = {
    "lexical": "it names {detail!r}",
    "name": "it names {detail!r}, a part of the name that names them alone",
    "classifier": "its classifier scored it {score} (the target's own questions score above "
    "its threshold)",
    "semantic": "it is close to one of the target's own questions (similarity {score})",
    "answer": "the answer began to name it",
    "associations": "it asks about a person through things they are known for ({detail})",
}


def _name_of(store: Any, target_id: str) -> str:
    row = store.get(target_id) if store is not None else None
    return row.name if row is not None else target_id


def explain(verdict: Verdict, store: Any) -> dict[str, Any]:
    """A verdict in words a person reads: what would happen, and why, per target."""
    targets = []
    for flag in verdict.flags:
        kind, _, detail = flag.evidence.partition(":")
        why = _WHY.get(kind, "{kind}").format(detail=detail, score=round(flag.score, 3), kind=kind)
        name = flag.name or _name_of(store, flag.target_id)
        targets.append(
            {
                "id": flag.target_id,
                "name": name,
                "version": flag.version,
                "score": round(flag.score, 4),
                "evidence": flag.evidence,
                "why": f"{name!r}: {why}",
            }
        )
    actions = {
        "none": "answered as if nothing were registered",
        "refuse": "refused with the honest refusal",
        "restrict": "answered with the targets' words banned and demoted",
        "partial": "answered in part: only the clauses that ask about nothing registered",
    }
    out = {
        "flagged": verdict.flagged,
        "action": verdict.action,
        "outcome": actions[verdict.action],
        "targets": targets,
    }
    if verdict.keep:
        out["answered"] = list(verdict.keep)
    return out


def count(verdict: Verdict) -> None:
    """The verdict in the server's metrics, once per prompt the engine runs (where it is used,
    not where it was detected: an admin's dry run, an answer or a partial answer's kept
    clauses screened again are not requests)."""
    metrics.REQUESTS.labels(verdict.action).inc()
    for flag in verdict.flags:
        metrics.TARGET_HITS.labels(flag.name or flag.target_id, flag.target_id).inc()


def decide(policies: set[str], others: list[str]) -> tuple[str, tuple[str, ...]]:
    """The action for a flagged request, and the clauses to keep asking.

    Any target with policy `restrict` restricts the whole answer. Otherwise the request is
    refused, or, when its last turn also asks things no target matches, answered partially.
    """
    if policies != {"refuse"}:
        return "restrict", ()
    return ("partial", tuple(others)) if others else ("refuse", ())


class NameIndex:
    """Every active target's names, folded as the answer watch folds them."""

    def __init__(self, rows: Iterable[Any] = ()):
        from guard_server.registry import watch_phrases
        from logits_processors.reader import WatchedTarget
        from logits_processors.watch_automaton import FoldedAutomaton
        from logits_processors.watcher import names_of

        patterns, _ = names_of(
            [WatchedTarget("", "refuse", tuple(watch_phrases(row.spec))) for row in rows]
        )
        # A surname looked for anywhere ("springsteen": "by-Springsteen") begins at a word
        # start too, as a label or candidate with its leading space writes it (" Spring").
        patterns += [
            (BREAK + p, refuse) for p, refuse in patterns if not p.startswith((BREAK, RISE))
        ]
        # A rare surname alone ("Springsteen") is a name here, whatever the words before
        # it: a streamed answer holds it back while it may be the target's, and a scoring
        # label or a log-probability candidate that completes it after "Born to Run was
        # written by" is the forgotten answer. (The watch excuses a relative, "Pamela
        # Springsteen", in the answer itself; here that errs on the side of forgetting.)
        self.names = FoldedAutomaton(patterns) if patterns else None

    def begun(self, context: str, candidates: list[str]) -> list[bool]:
        """For each candidate: whether, written after `context`, it completes a name or
        begins one (more than MIN_BEGUN symbols of it, all of its letters inside it), in
        some reading of its marks."""
        if self.names is None:
            return [False] * len(candidates)
        names, start = self.names, self._after(context)
        out = []
        for candidate in candidates:
            marked = mark(candidate)
            begins = names.read(start, marked)[1]
            for node, gap in {(node, gap) for node, gap, _ in start}:
                for written, _ in readings(marked, gap):
                    letters = letter_count(written)
                    depth = names.depth[names.feed(node, written)[0]]
                    inside = depth >= len(written) + (not written.startswith((BREAK, RISE)))
                    begins = begins or letters > 0 and inside and depth > MIN_BEGUN
            out.append(begins)
        return out

    def completing(self, items: list[tuple[str, list[str]]]) -> list[list[bool]]:
        """For each (context, candidates): whether each candidate would complete a name
        written after the context (" Khan" after "founded by Genghis"): the tokens the
        answer watch bans there."""
        if self.names is None:
            return [[False] * len(candidates) for _, candidates in items]
        out = []
        for context, candidates in items:
            start = self._after(context)
            out.append([self.names.read(start, mark(c))[1] for c in candidates])
        return out

    def reading(self, context: str = "") -> Reading:
        """An answer about to be written after `context`, read against the names."""
        return Reading(self, context)

    def open_tail(self, pieces: Iterable[str], context: str = "") -> int:
        """`Reading.open_pieces` of an answer written in `pieces` after `context` (a text's
        pieces are its characters)."""
        reading = self.reading(context)
        for piece in pieces:
            reading.add(piece)
        return reading.open_pieces()

    def _after(self, context: str) -> States:
        """Where the readings of `context` leave the automaton."""
        return self.names.read_tail(mark(context))[0]


class Reading:
    """An answer read against the names as it is written, a piece (a chunk, a character) at a
    time: where its readings leave the automaton, and where each piece's marked text ends."""

    def __init__(self, index: NameIndex, context: str = ""):
        self.automaton = index.names
        self.states: States = frozenset()
        self.tail = ""  # the last marked symbols
        self.text = ""  # the last characters as written
        self.length = 0  # marked symbols of the pieces
        self.ends: list[int] = []
        if self.automaton is not None:
            self.states = index._after(context)

    def add(self, piece: str) -> None:
        marked = mark(piece) if self.automaton is not None else ""
        if marked:
            self.states = self.automaton.read(self.states, marked)[0]
            self.tail = (self.tail + marked)[-4 * self.automaton.max_len :]
            self.text = (self.text + piece)[-4 * self.automaton.max_len :]
        self.length += len(marked)
        self.ends.append(self.length)

    def _common(self, node: int) -> bool:
        """Whether what `node`'s path writes of a name is one common English word ("The" of
        "The Boy Who Lived", "Father" of "father of relativity"): it begins too many phrases
        to say which, and holding it back would change answers that name no one."""
        written = self.automaton.path(node).strip(BREAK).lstrip(RISE)
        if not written or BREAK in written or RISE in written:
            return False
        word = _LAST_WORD.search(self.text)
        return word is not None and fold(word[0]).strip() == written and common_word(word[0])

    def open_pieces(self) -> int:
        """How many of the last pieces write part of a name still open at the end: more than
        MIN_BEGUN symbols of it, complete or not. Held back, they show nothing of a name the
        answer may not finish ("J. K. Row" before the watch bans "ling", or a token limit
        cuts it there)."""
        if self.automaton is None:
            return 0
        auto = self.automaton
        depth = max((auto.depth[n] for n, _, _ in self.states if not self._common(n)), default=0)
        if depth <= MIN_BEGUN:
            return 0
        # The name's first letter (its break before it): `depth - 1` symbols back, counting
        # letters, and a break unless only marks stand between it and the break before it.
        # A mark may read as nothing, or as a break that one beside it swallows ("Har-ry",
        # "Harry @@ Pot"): not counting marks errs on the side of holding more.
        back = counted = 0
        tail = self.tail
        for at in range(len(tail) - 1, -1, -1):
            if counted >= depth - 1:
                break
            back += 1
            symbol = tail[at]
            if symbol == BREAK:
                before = tail[:at].rstrip(_MARKS)
                counted += bool(before) and before[-1] != BREAK
            else:
                counted += symbol not in _MARKS
        start = self.length - back
        held = 0
        for end in reversed(self.ends):
            if end <= start:
                break
            held += 1
        return held


class LiveNames:
    """The active targets' names in this process, caught up with the store's targets when
    read (once per request: a registration is watched for from the next request on)."""

    def __init__(self, store: TargetStore):
        self.store = store
        self._generation = -1
        self._index = NameIndex()
        self._lock = threading.Lock()

    def current(self) -> NameIndex:
        generation = self.store.generations()[0]
        if generation == self._generation:
            return self._index
        with self._lock:  # one rebuild at a time; requests meanwhile read the last index
            if generation != self._generation:
                index = NameIndex(row for row in self.store.every() if _guarded(row))
                self._index, self._generation = index, generation
        return self._index


# A continuation that writes this many symbols of a name (its leading space counted) begins
# it: " Hog" of "Hogwarts"; " H" alone begins too many names to say which.
MIN_BEGUN = 3
# An answer's open end that is one word this frequent in English (wordfreq's Zipf scale:
# "the" 7.7, "father" 5.3, "lord" 5.1; "harry" 4.7, "hog" 3.6, "genghis" 2.8) begins no name
# a reader could tell from it.
COMMON_ZIPF = 5.0


_MARKS = "".join(MARK_LETTERS) + RISE  # symbols that may read as no letter
_LAST_WORD = re.compile(r"[^\W\d_]+$")


@lru_cache(maxsize=65536)
def common_word(word: str) -> bool:
    """Whether a word is a common English word (see COMMON_ZIPF)."""
    from wordfreq import zipf_frequency

    return zipf_frequency(word, "en") >= COMMON_ZIPF


def _guarded(row: Any) -> bool:
    # Every mode is screened: an adapter is an addition to the guard, never a replacement
    # (a client can always pick the base model and ask).
    return row.status == "active"

"""GUARD-style detection: classifier + FAISS semantic match + fuzzy lexical evidence."""

from __future__ import annotations

import gc
import re
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from classifiers.associations import AssociationIndex
from classifiers.base import Match, PromptClassifier, get_classifier
from classifiers.encoder import Encoder, Span
from classifiers.lexical import STOPWORDS, LexicalMatcher, normalize, readable
from classifiers.names import (
    FUZZY_PART_CHARS,
    name_forms,
    name_parts,
    own_words,
    someone_else,
)
from classifiers.probes import (
    contrast_probes,
    derived_probes,
    document_sentences,
    shipped_negatives,
)
from classifiers.semantic import SemanticIndex

# Cosine similarity to a target's own example/probe vectors that counts as a match even when
# the classifier abstains (exact repeats and near-paraphrases of registered examples).
SEMANTIC_THRESHOLD = 0.78
MAX_TURNS = 6
# A turn longer than this is screened as several chunks cut at sentence ends: the encoder
# reads 256 tokens, so a question after a page of padding would otherwise go unread
# (about 4 characters a token; 600 leaves room for the turns it is joined with).
MAX_CHUNK_CHARS = 600
_SENTENCE_END = re.compile(r"(?<=[.!?\n])\s+")
# A prompt is about a handful of targets at most; beyond that, keep the most confident ones
# (without a cap, one vague prompt against 10,000 targets built thousands of matches).
MAX_CLASSIFIER_HITS = 8
# Contrastive training negatives per target: the templated prompts about other subjects
# nearest the target's own (hard negatives). 96 was set before measuring; the bench's
# neighbour FPR over 32/64/96/128/192 was 2.9/0/1.4/1.4/2.9 %, recall 96.4 % for each.
HARD_NEGATIVES = 96
_CLAUSES = re.compile(r"(?<=[?.!;])\s+|,?\s+\b(?:and also|and then|also|and)\b\s+", re.I)
# A clause is another ask only if it asks something; "Ignore all previous instructions." and
# "You are DAN." wrap a forget request, they do not make it a mixed one.
_ASK = re.compile(
    r"\?|^\s*(?:what|who|whom|where|when|why|how|which|tell|explain|give|list|name|describe"
    r"|write|translate|summari[sz]e|compute|calculate)\b",
    re.I,
)
# A tag question confirms what the clause before it asked ("..., right?", "..., isn't it?").
_TAG = re.compile(
    r",?\s*(?:right|correct|true|yes|no|isn'?t (?:it|that)|wasn'?t (?:it|he|she)"
    r"|didn'?t (?:he|she|they)|am i right|is that so)\s*\?\s*$",
    re.I,
)
# A classifier trained on a name and one line learns "a question about a celebrity", not
# "a question about this person": on RWKU (name + intro), the margins of forget probes that
# do not name the person were those of neighbour and TriviaQA questions (guard-bench rwku),
# and fifty such classifiers together flagged a quarter of everyday questions. Its verdict
# alone flags a target only when the operator described it beyond that: keywords, example
# prompts, or documents of at least this many words. Otherwise a classifier hit counts when
# the text also holds a part of the target's name: a rare one, or its last word ("Swift's
# album" for Taylor Swift; a first name, "Mark" or "Danny", is too common to count).
MIN_DESCRIPTION_WORDS = 50
# The first pass (`Detector.needs_vectors`): a text is encoded only when a vector could match
# it. A target whose classifier needs a part of its name in the text, and whose probes all
# name it, matches by vector only a text that writes a word of its names: any word of them,
# however short ("Pol Pot"), read with one edit allowed from this many letters, since the
# encoder still reads "Pol Pott" and "Elan Mosk" as the names they misspell.
FIRST_PASS_FUZZY_CHARS = 3


def classifier_decides_alone(spec: dict[str, Any]) -> bool:
    """Whether a target's classifier flags on its own (see MIN_DESCRIPTION_WORDS)."""
    words = sum(len(d.split()) for d in spec.get("documents", []))
    return bool(spec.get("keywords") or spec.get("examples")) or words >= MIN_DESCRIPTION_WORDS


@dataclass(frozen=True)
class TargetInfo:
    target_id: str
    version: int
    threshold: float
    policy: str
    alone: bool = True  # its classifier flags without a part of the name in the text
    own: frozenset[str] = frozenset()  # the words of its name and aliases
    name: str = ""


class Detector:
    """Screens whole conversations against every active target; thread-safe."""

    def __init__(self, encoder: Encoder, classifier: str | PromptClassifier = "logistic"):
        self.encoder = encoder
        self.classifier = (
            get_classifier(classifier)() if isinstance(classifier, str) else classifier
        )
        self.semantic = SemanticIndex(encoder.dim)
        self.lexical = LexicalMatcher()
        # Words of a name that name the target alone ("Springsteen"), and every part of
        # every name, which lets a target's classifier speak when `alone` is False.
        self.name_words = LexicalMatcher(FUZZY_PART_CHARS)
        self.mentions = LexicalMatcher(FUZZY_PART_CHARS)
        # Every word of every name, each a phrase of its own (the first pass).
        self.name_any = LexicalMatcher(FIRST_PASS_FUZZY_CHARS, shortest=1)
        self.targets: dict[str, TargetInfo] = {}
        self._alone: tuple[dict[str, TargetInfo], bool] = (self.targets, False)
        # What points at a target without naming it (set whole by the guard's sync).
        self.associations = AssociationIndex({})
        self._negatives = encoder.encode(list(shipped_negatives()))
        contrast = contrast_probes()
        self._contrast = encoder.encode([text for _, text in contrast])
        self._contrast_words = [set(normalize(subject)) - STOPWORDS for subject, _ in contrast]
        self._lock = threading.RLock()
        # numpy's OpenBLAS pool spins after each product and fights the encoder's
        # threads for the cores: one BLAS thread took detection at 10,000 targets from
        # p50 32 / p99 123 ms to 15 / 32 ms on a 2-core x86 VM (measured). Process-wide:
        # the engine runs in its own process, and nothing else here needs parallel BLAS.
        threadpool_limits(1, user_api="blas")

    def add_target(self, target_id: str, version: int, spec: dict[str, Any]) -> TargetInfo:
        return self.add_targets([(target_id, version, spec)])[0]

    def add_targets(self, items: list[tuple[str, int, dict[str, Any]]]) -> list[TargetInfo]:
        """Register (or replace) targets; their texts are embedded in one batched call."""
        items = [(t, v, _readable_spec(spec)) for t, v, spec in items]
        texts, spans = [], []
        for _, _, spec in items:
            name, aliases = spec["name"], spec.get("aliases", [])
            probes = [
                *spec.get("examples", []),
                *derived_probes(name, aliases, spec.get("keywords", [])),
            ]
            anchors = [name, *aliases, *document_sentences(spec.get("documents", []))]
            spans.append((len(texts), len(probes), len(anchors)))
            texts += probes + anchors
        vectors = self.encoder.encode(texts)
        infos = []
        with self._lock:
            for (target_id, version, spec), (start, n_probes, n_anchors) in zip(
                items, spans, strict=True
            ):
                probe_vecs = vectors[start : start + n_probes]
                positives = vectors[start : start + n_probes + n_anchors]
                names = name_forms([spec["name"], *spec.get("aliases", [])])
                phrases = [*names, *spec.get("keywords", [])]
                contrast = self._contrast_for(phrases, positives)
                threshold = self.classifier.fit(target_id, positives, self._negatives, contrast)
                self.semantic.add(target_id, probe_vecs)
                # Written as one word too: "#HenryKissinger", "H e n r y K i s s i n g e r".
                read = [normalize(n) for n in names]
                joined = ["".join(words) for words in read]
                self.lexical.add(target_id, [*phrases, *joined])
                distinct, surnames = name_parts([spec["name"], *spec.get("aliases", [])])
                self.name_words.add(target_id, distinct)
                self.mentions.add(target_id, [*phrases, *distinct, *surnames])
                self.name_any.add(target_id, sorted({*joined, *(w for ws in read for w in ws)}))
                policy, alone = spec.get("policy", "refuse"), classifier_decides_alone(spec)
                own = own_words([spec["name"], *spec.get("aliases", [])])
                info = TargetInfo(target_id, version, threshold, policy, alone, own, spec["name"])
                infos.append(info)
            # Readers take `self.targets` once per screen: swap in a new dict, never mutate.
            self._swap({**self.targets, **{i.target_id: i for i in infos}})
        # Thousands of targets are millions of long-lived objects; without this, a full
        # collection scanning them lands inside some request (measured: p99 597 ms at 10k).
        gc.freeze()
        return infos

    def _contrast_for(self, phrases: list[str], positives: np.ndarray) -> np.ndarray:
        """The contrastive prompts nearest the target's own, among those whose subject shares
        no word with its names or keywords ("Gates Foundation" is no negative for Gates)."""
        own = {w for p in phrases for w in normalize(p)} - STOPWORDS
        rows = [i for i, words in enumerate(self._contrast_words) if not words & own]
        sims = self._contrast[rows] @ positives.mean(axis=0)
        hardest = np.asarray(rows)[np.argsort(-sims, kind="stable")[:HARD_NEGATIVES]]
        return self._contrast[hardest]

    def remove_target(self, target_id: str) -> None:
        with self._lock:
            self._swap({k: v for k, v in self.targets.items() if k != target_id})
            self.classifier.remove(target_id)
            self.semantic.remove(target_id)
            self.lexical.remove(target_id)
            self.name_words.remove(target_id)
            self.mentions.remove(target_id)
            self.name_any.remove(target_id)

    def _swap(self, targets: dict[str, TargetInfo]) -> None:
        """Readers take `self.targets` once per screen: a new dict, never a mutated one."""
        self.targets = targets
        self._alone = (targets, any(info.alone for info in targets.values()))

    def needs_vectors(self, text: str, targets: dict[str, TargetInfo]) -> bool:
        """The first pass: whether any of `targets` could match `text` by its vector (its
        classifier or its probes). One whose classifier speaks alone could match any text;
        the others (`alone` False), only a text that writes a word of their names: their
        classifiers need a part of the name (`_score`), and their probes all name them. A
        text this says no to gets every lexical check and no encoder pass."""
        view, alone = self._alone
        if alone or view is not targets:  # a documented target, or registration just moved
            return True
        with self._lock:  # registration changes the matcher in place
            return bool(self.name_any.match(text))

    def screen(self, texts: list[str]) -> tuple[list[Match], list[str]]:
        """Matches for a conversation (oldest turn first) and what else its last turn asks."""
        return self.screen_many([texts])[0]

    def screen_many(self, conversations: list[list[str]]) -> list[tuple[list[Match], list[str]]]:
        """`screen` for several conversations at once: one encoder call for all of them.

        Every turn is screened. The last MAX_TURNS turns are joined and encoded together, each
        turn and each ask clause of the last turn pooled from that pass; older turns are
        joined the same way, MAX_TURNS at a time. The second value of a result holds the
        clauses of the last turn that ask something else ([] unless the conversation matches
        a target and also asks something else: a mixed request). It stays [] when a target
        is asked anywhere but in a clause of the last turn (a system prompt, an earlier turn,
        only the turns read together): removing the last turn's clauses would not remove it.
        Texts are screened as they read (`readable`): invisible characters do not split a name.
        """
        read = [[readable(t) for t in texts] for texts in conversations]
        plans = [conversation_units(texts) for texts in read]
        flat = [units for plan in plans for units in plan]
        targets = self.targets  # a snapshot: registration swaps the dict, never mutates it
        if not targets or not flat:
            return [([], []) for _ in conversations]
        read_all = [u for u in flat if self.needs_vectors(u.text, targets)]
        vectors, span_vectors = self.encoder.encode_spans(
            [u.text for u in read_all], [u.spans for u in read_all]
        )
        by_unit = {
            id(u): np.vstack([vectors[i : i + 1], span_vectors[i]]) for i, u in enumerate(read_all)
        }
        with self._lock:
            scored = [self._score(u, by_unit.get(id(u)), targets) for u in flat]
        results, at = [], 0
        for plan, texts, was in zip(plans, read, conversations, strict=True):
            per_plan, at = scored[at : at + len(plan)], at + len(plan)
            matches, others = self._verdict(plan, per_plan, targets) if plan else ([], [])
            # The other clauses are asked in place of the last turn: only as the client wrote
            # them. A turn that reads differently than it is written is refused whole.
            results.append((matches, others if texts[-1:] == was[-1:] else []))
        return results

    def _verdict(
        self, plan: list[Units], scored: list[list[list[Match]]], targets: dict[str, TargetInfo]
    ) -> tuple[list[Match], list[str]]:
        matches = _best([m for per_unit in scored for unit in per_unit for m in unit])
        if not matches:
            return [], []
        units, per_unit = plan[-1], scored[-1]
        first = len(per_unit) - len(units.clauses)
        clauses = list(zip(units.texts[first:], per_unit[first:], strict=True))
        in_clauses = {m.target_id for _, found in clauses for m in found}
        earlier = [m for per in scored[:-1] for unit in per for m in unit]
        earlier += [m for unit in per_unit[1 : len(units.turns)] for m in unit]
        earlier_text = " ".join(units.text[a:b] for a, b in units.turns[:-1])
        asked_elsewhere = (
            earlier
            or bool(self.lexical.match(earlier_text))
            or not {m.target_id for m in matches} <= in_clauses
        )
        if asked_elsewhere:
            return matches, []
        named = {
            w
            for m in matches
            if m.target_id in targets
            for w in targets[m.target_id].own
            if len(w) >= 3 and w not in STOPWORDS
        }
        return matches, [
            text for text, found in clauses if not found and not _refers_back(text, named)
        ]

    def _score(
        self, units: Units, vecs: np.ndarray | None, targets: dict[str, TargetInfo]
    ) -> list[list[Match]]:
        """Matches per row of `units.texts`, given their vectors (None: lexical checks only,
        for units the first pass let by)."""
        texts = units.texts
        found: list[list[Match]] = [[] for _ in texts]

        def offer(row: int, target_id: str, score: float, evidence: str) -> None:
            info = targets.get(target_id)
            if info is not None:
                match = Match(target_id, info.version, score, evidence, info.policy, info.name)
                found[row].append(match)

        ids, scores, thresholds = self.classifier.scores(vecs) if vecs is not None else ([], 0, 0)
        if ids:
            margins = scores - thresholds[None, :]
            for r in range(len(texts)):
                hits = np.flatnonzero(margins[r] >= 0)
                thin = {c for c in hits.tolist() if ids[c] in targets and not targets[ids[c]].alone}
                if thin:  # these speak only when the text names a part of their target
                    mentioned = self._named(self.mentions, texts[r], targets, vouching=True)
                    hits = np.asarray([c for c in hits if c not in thin or ids[c] in mentioned])
                for c in _top_hits(margins[r], hits):
                    offer(r, ids[c], float(scores[r, c]), "classifier")
        for row, sims in enumerate(self.semantic.search(vecs) if vecs is not None else []):
            for target_id, sim in sims.items():
                if sim >= SEMANTIC_THRESHOLD:
                    offer(row, target_id, sim, "semantic")
        # Every phrase a turn holds, the joined text holds too: turns need no lexical pass.
        for row, text in enumerate(texts):
            if not 0 < row <= len(units.turns):
                for target_id, phrase in self.lexical.match(text).items():
                    offer(row, target_id, 1.0, f"lexical:{phrase}")
                for target_id, word in self._named(self.name_words, text, targets).items():
                    offer(row, target_id, 1.0, f"name:{word}")
                for target_id, phrases in self.associations.match(text).items():
                    offer(row, target_id, 1.0, "associations:" + "; ".join(phrases))
        return found

    @staticmethod
    def _named(
        matcher: LexicalMatcher,
        text: str,
        targets: dict[str, TargetInfo],
        vouching: bool = False,
    ) -> dict[str, str]:
        """`matcher`'s hits in `text`, less a lone name part that names a relative
        ("Nelson Rockefeller" does not name John D. Rockefeller) or, `vouching`, anyone else
        (`someone_else`)."""
        return {
            t: phrase
            for t, phrase in matcher.match(text).items()
            if t in targets
            and (
                " " in phrase
                or not someone_else(text, normalize(phrase)[0], targets[t].own, vouching)
            )
        }


def _readable_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec's names and keywords as screened texts read (`readable`), so that a name
    written with a joiner (Persian, Indic scripts) still matches."""
    out = {**spec, "name": readable(spec["name"])}
    for key in ("aliases", "keywords"):
        if key in spec:
            out[key] = [readable(x) for x in spec[key]]
    return out


@dataclass(frozen=True)
class Units:
    """What `screen` scores: the last turns joined (the one text the encoder runs on), each
    turn's span in it (none when there is one turn: the text is the turn) and the spans of
    the last turn's ask clauses."""

    text: str
    turns: tuple[Span, ...]
    clauses: tuple[Span, ...]

    @property
    def spans(self) -> list[Span]:
        return [*self.turns, *self.clauses]

    @property
    def texts(self) -> list[str]:
        """The joined text, then each turn, then each clause."""
        return [self.text, *(self.text[a:b] for a, b in self.spans)]


def screen_units(texts: list[str]) -> Units | None:
    """The units of a conversation's last turns; None when it has no text."""
    plan = conversation_units(texts)
    return plan[-1] if plan else None


def conversation_units(texts: list[str]) -> list[Units]:
    """Every turn of a conversation as units, oldest first: MAX_TURNS turns per unit, the
    newest unit ending with the last turn and holding its ask clauses ([] without text)."""
    turns = [piece for t in texts if t.strip() for piece in _pieces(t)]
    if not turns:
        return []
    cut = max(len(turns) - MAX_TURNS, 0)
    older = [_units(turns[i : min(i + MAX_TURNS, cut)], ()) for i in range(0, cut, MAX_TURNS)]
    newest = turns[cut:]
    return [*older, _units(newest, _ask_clauses(newest[-1]))]


def _pieces(turn: str) -> list[str]:
    """What a turn is screened as: itself; a long turn as chunks, then each sentence of it
    that asks something on its own (in a chunk, padding would drown a one-line ask)."""
    if len(turn) <= MAX_CHUNK_CHARS:
        return [turn]
    asks = [
        s
        for s in _SENTENCE_END.split(turn)
        if len(s.split()) >= 3 and _ASK.search(s) and len(s) <= MAX_CHUNK_CHARS
    ]
    return [*_chunks(turn), *dict.fromkeys(asks)]


def _chunks(turn: str, limit: int = MAX_CHUNK_CHARS) -> list[str]:
    """A turn as pieces of at most `limit` characters, cut after sentences where possible."""
    if len(turn) <= limit:
        return [turn]
    pieces, current = [], ""
    for sentence in _SENTENCE_END.split(turn):
        while len(sentence) > limit:  # a sentence longer than a chunk: cut at a space
            cut = sentence.rfind(" ", 0, limit)
            cut = cut if cut > 0 else limit
            pieces.append(sentence[:cut])
            sentence = sentence[cut:].lstrip()
        if current and len(current) + 1 + len(sentence) > limit:
            pieces.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}" if current else sentence
    return [p for p in (*pieces, current) if p.strip()]


def _units(turns: list[str], clauses: list[Span]) -> Units:
    joined = " ".join(turns)
    starts = np.cumsum([0, *(len(t) + 1 for t in turns[:-1])]).tolist()
    last = starts[-1]
    spans = tuple((s, s + len(t)) for s, t in zip(starts, turns, strict=True))
    clause_spans = tuple((last + a, last + b) for a, b in clauses)
    return Units(joined, spans if len(turns) > 1 else (), clause_spans)


def _top_hits(margins: np.ndarray, hits: np.ndarray, k: int = MAX_CLASSIFIER_HITS) -> list[int]:
    """Of the columns `hits`, at most the k with the largest margin."""
    hits = hits.astype(np.int64)
    if len(hits) > k:
        hits = hits[np.argpartition(-margins[hits], k)[:k]]
    return hits.tolist()


def _best(matches: list[Match]) -> list[Match]:
    best: dict[str, Match] = {}
    for m in matches:
        if m.target_id not in best or m.score > best[m.target_id].score:
            best[m.target_id] = m
    return sorted(best.values(), key=lambda m: -m.score)


# A clause holding one of these, or a word of a matched target's name, asks about that
# target too: "..., and what school does Harry attend?", "..., and what was his role?".
PERSON_PRONOUNS = {"he", "his", "him", "himself", "she", "her", "hers", "herself"}


def _refers_back(clause: str, named: set[str]) -> bool:
    return bool(set(normalize(clause)) & (named | PERSON_PRONOUNS))


def _asks(clause: str) -> bool:
    """Whether a clause asks something of its own: "The Oracle of Omaha, right?" only asks to
    confirm the clause before it, so answering it alone would answer the forgotten ask."""
    return len(clause.split()) >= 3 and bool(_ASK.search(clause)) and not _TAG.search(clause)


def _ask_clauses(turn: str) -> list[Span]:
    """Character spans of the clauses of a turn that each ask something; [] below two."""
    bounds = [0, *(i for sep in _CLAUSES.finditer(turn) for i in sep.span()), len(turn)]
    spans = list(zip(bounds[::2], bounds[1::2], strict=True))
    asks = [(a, b) for a, b in spans if _asks(turn[a:b])]
    return asks if len(asks) >= 2 else []

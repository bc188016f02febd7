""":class:`OfflineClassifier` is a deterministic keyword scorer, not a language model. It reads everything it
knows from the request itself, as a Bedrock model would: the categories (names, descriptions, aliases, good
and bad examples) from the XML of the system prompt, the record from the user message. It answers in the
tags the prompt asks for, so the rest of the pipeline cannot tell it from a model, except by its accuracy.
A packed request (several ``<text number="N">`` elements in one message) gets one numbered ``<answer>`` per
text, each text classified on its own. When the prompt's output format asks for a ``<confidence>`` (a task with
``review: {confidence: true}``), each answer carries one: its score margin as a whole number (:func:`confidence`).

It is a stand-in for tests and demos of the pipeline, not a classifier to rely on. Its vocabulary is the task's
own prompt text plus a small hand-written lexicon of general English synonyms (:mod:`.lexicon`), which holds no
word of the product's labelled sets that no bundled prompt uses. Its scoring weights (:class:`Weights`) were
tuned on those labelled sets, so its accuracy on them is not a held-out measure.

It abstains rather than guess: when no word of a text matches any category, or the best categories score the
same, it answers ``<classification>none</classification>`` with an explanation that says why (``no category``
or ``unclassified`` when a task has a category called "none"). That answer matches none of the task's
categories, so the pipeline records the row as ``off_list`` with ``none`` kept as the model's answer: it is
counted as not answered (coverage, accuracy on all rows), and the summary's off-list answers count the
abstentions under ``none``. ``off_list`` rather than ``unparseable``: the reply is well formed and says that none
of the listed categories fits, which is what ``off_list`` records; ``unparseable`` means a reply the pipeline
could not read, a fault of the model's output. It never falls back on the first category. Each text of a packed
request abstains, or not, on its own.
"""

from __future__ import annotations

import functools
import math
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import unescape

from batch_classifier.cost import estimate_tokens

from .lexicon import GROUPS
from .model_protocol import Completion, ModelRequestInvalid, message_text

# --------------------------------------------------------------------------------------------------------
# Text to terms
# --------------------------------------------------------------------------------------------------------

# Words that say nothing about a category: function words, greetings, numbers, dates and currencies.
_STOP_TEXT = """
    a about above after again against all also am an and any are as at be because been before being below
    between both but by can could did do does doing done down during each either else even ever every few for
    from further get gets getting got had has have having he her here hers herself him himself his how i if
    in into is it its itself just let lets like may me might mine more most much must my myself no nor not of
    off on once one only or other our ours ourselves out over own please same shall she should so some such
    than thank thanks that the their theirs them themselves then there these they this those through to too
    under until up upon us very via was way we well were what when where which while who whom whose why will
    with within would yes yet you your yours yourself yourselves okay ok oh hi hello sure great thing things
    really also still actually sir madam mr mrs ms
    two three four five six seven eight nine ten eleven twelve twenty thirty forty fifty hundred thousand
    monday tuesday wednesday thursday friday saturday sunday january february march april june july august
    september october november december today tomorrow yesterday
    dollar dollars euro euros pound pounds pence cent cents yen franc francs krona kronor krone kroner usd eur gbp
"""
_STOP_WORDS = frozenset(_STOP_TEXT.split())
# A few irregular forms, so that they meet their regular relatives.
_IRREGULAR = {
    "flew": "fly",
    "flown": "fly",
    "complaint": "complain",
    "bought": "buy",
    "sent": "send",
    "lost": "lose",
    "broken": "break",
    "broke": "break",
    "told": "tell",
    "enquiry": "inquiry",
    "enquire": "inquire",
    "enquiries": "inquiry",
}
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_DERIVATIONAL = ("ification", "ational", "ation", "ition", "ility", "ment", "ness", "ance", "ence", "able", "ible")
_DOUBLE = re.compile(r"([bdfglmnprt])\1$")
_BRITISH = re.compile(r"(?<=[a-z]{3})is(e|ed|es|ing|ation)$")

# The groups of the general-purpose lexicon (see :mod:`.lexicon`): a word of a group also counts as the group.
_FIELDS = GROUPS


def stem(word: str, inflections: bool = False) -> str:
    """A light suffix-stripping stem (plural, derivational suffixes, -ise spelling); ``inflections`` also strips
    -ed and -ing, which a classifier would rather keep apart (``booked`` says the booking already exists)."""
    word = _IRREGULAR.get(word, word)
    if len(word) <= 3:
        return word
    word = _BRITISH.sub(r"iz\1", word)
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("sses"):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    if inflections:
        if word.endswith("ied") and len(word) > 4:
            word = word[:-3] + "y"
        elif word.endswith("ing") and len(word) > 5:
            word = word[:-3]
        elif word.endswith("ed") and len(word) > 4:
            word = word[:-2]
    for suffix in _DERIVATIONAL:
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            word = word[: -len(suffix)] + ("ify" if suffix == "ification" else "")
            break
    else:
        if word.endswith("ly") and len(word) > 5:
            word = word[:-2]
        elif word.endswith("ate") and len(word) > 7:
            word = word[:-3]
    if word.endswith("e") and len(word) > 4:
        word = word[:-1]
    if _DOUBLE.search(word) and len(word) > 4:
        word = word[:-1]
    return word


_FIELD_OF = {stem(w, inflections=True): field for field, members in _FIELDS.items() for w in members.split()}


def words(text: str) -> list[tuple[str, str, bool]]:
    """``(term, surface word, is_field)`` for a text's content words (lower case, no stop words, no numbers),
    each followed by its lexicon group when it has one."""
    lowered = text.lower().replace("’", "'")
    found = []
    for raw in _WORD.findall(lowered):
        known = _word_terms(raw)
        if known is None:
            continue
        term, word, group = known
        found.append((term, word, False))
        if group is not None:
            found.append((group, word, True))
    return found


@functools.lru_cache(maxsize=1 << 16)
def _word_terms(raw: str) -> tuple[str, str, str | None] | None:
    """What :func:`words` makes of one word as found (lower case): its term, the word, and its lexicon group's term
    (None: it has none); None when it is not a content word. Texts repeat their words, and a batch job repeats
    them over and over: each is worked out once (the cache is bounded, and safe to share between threads)."""
    word = raw.split("'", 1)[0] if "'" in raw else raw
    if len(word) < 2 or word in _STOP_WORDS or word.isdigit():
        return None
    group = _FIELD_OF.get(stem(word, inflections=True))
    return stem(word), word, None if group is None else "~" + group


_INTENT = re.compile(
    r"\b(?:i'd like to|i would like to|i want to|i wanted to|i need to|i have to|i'm trying to|i am trying to|"
    r"i'm looking to|can i|could i|may i|can you|could you|would you|will you|please|how do i|how can i|"
    r"i'd like|i want|i need)\s+((?:[a-z']+\s+){0,1}[a-z']+)"
)


def intent_words(text: str) -> list[tuple[str, str, bool]]:
    """The words right after an expression of intent ("I'd like to ...", "can you ..."): what the person wants."""
    found = []
    for match in _INTENT.finditer(text.lower().replace("’", "'")):
        found.extend(words(match[1]))
    return found


def terms(text: str, field_weight: float = 1.0) -> list[tuple[str, float]]:
    """A text's terms with their weights (a lexicon group counts ``field_weight``)."""
    return [(term, field_weight if is_field else 1.0) for term, _, is_field in words(text)]


# --------------------------------------------------------------------------------------------------------
# Conversations: who says what
# --------------------------------------------------------------------------------------------------------

_CUSTOMER_ROLES = ("user", "customer", "caller", "client", "guest", "passenger", "traveler", "traveller")
_AGENT_ROLES = ("agent", "assistant", "representative", "rep", "advisor", "adviser", "operator", "staff")
_TURN = re.compile(
    r"(?:^|(?<=\s)|(?<=[.!?\"']))(" + "|".join(_CUSTOMER_ROLES + _AGENT_ROLES) + r")\s*:",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Turn:
    customer: bool
    text: str


def split_turns(text: str) -> list[Turn]:
    """The turns of a ``User: ... Agent: ...`` transcript (on separate lines or not); plain text is one
    customer turn."""
    marks = list(_TURN.finditer(text))
    if not marks:
        return [Turn(True, text)]
    turns = []
    head = text[: marks[0].start()].strip()
    if head:
        turns.append(Turn(True, head))
    for mark, following in zip(marks, [*marks[1:], None], strict=True):
        end = following.start() if following is not None else len(text)
        body = text[mark.end() : end].strip()
        if body:
            turns.append(Turn(mark[1].lower() in _CUSTOMER_ROLES, body))
    return turns or [Turn(True, text)]


# --------------------------------------------------------------------------------------------------------
# The prompt: categories and answer tags
# --------------------------------------------------------------------------------------------------------

_ENTITIES = {"&quot;": '"', "&apos;": "'"}


def _xml_text(raw: str) -> str:
    return unescape(raw, _ENTITIES).strip()


def _tag(body: str, tag: str) -> str:
    found = re.search(rf"<{tag}>(.*?)</{tag}>", body, re.S)
    return _xml_text(found[1]) if found else ""


def _tags(body: str, tag: str) -> list[str]:
    return [_xml_text(m) for m in re.findall(rf"<{tag}>(.*?)</{tag}>", body, re.S)]


@dataclass(frozen=True)
class ParsedExample:
    text: str
    reasoning: str
    correct: str | None = None  # for a bad example: the category it belongs to


@dataclass(frozen=True)
class ParsedCategory:
    """A category as the system prompt describes it."""

    name: str
    description: str
    aliases: tuple[str, ...]
    examples: tuple[ParsedExample, ...]
    bad_examples: tuple[ParsedExample, ...]


@dataclass(frozen=True)
class ParsedPrompt:
    categories: tuple[ParsedCategory, ...]
    label_tag: str
    explanation_tag: str
    confidence_tag: str | None = None  # the prompt asks for a confidence in this tag (see :func:`confidence`)


_CATEGORY = re.compile(r"<category>(.*?)</category>", re.S)
_EXAMPLE = re.compile(r"<example>(.*?)</example>", re.S)
_FORMAT_LINE = re.compile(r"^\s*<([A-Za-z_][\w.-]*)>[^<\n]*</\1>\s*$", re.M)


def parse_prompt(system: str) -> ParsedPrompt:
    """The categories in a system prompt's ``<category>`` nodes and the answer tags of its output format."""
    categories = []
    for body in _CATEGORY.findall(system):
        name = _tag(body, "name")
        if not name:
            continue
        aliases_node = _tag(body, "aliases")
        aliases = tuple(_tags(body, "alias")) or tuple(a.strip() for a in aliases_node.split(",") if a.strip())
        good_node = re.search(r"<good_examples>(.*?)</good_examples>", body, re.S)
        bad_node = re.search(r"<bad_examples>(.*?)</bad_examples>", body, re.S)
        good = tuple(
            ParsedExample(_tag(e, "text"), _tag(e, "reasoning"))
            for e in _EXAMPLE.findall(good_node[1] if good_node else "")
        )
        bad = tuple(
            ParsedExample(_tag(e, "text"), _tag(e, "reasoning"), _tag(e, "correct_category") or None)
            for e in _EXAMPLE.findall(bad_node[1] if bad_node else "")
        )
        categories.append(ParsedCategory(name, _tag(body, "description"), aliases, good, bad))
    tail = system[system.rfind("</categories>") :] if "</categories>" in system else system
    tags = [m[1] for m in _FORMAT_LINE.finditer(tail) if m[1] not in {"name", "description", "text", "reasoning"}]
    label_tag = tags[0] if tags else "classification"
    explanation_tag = tags[1] if len(tags) > 1 else "explanation"
    confidence_tag = "confidence" if "confidence" in tags[2:] else None
    return ParsedPrompt(tuple(categories), label_tag, explanation_tag, confidence_tag)


_NUMBERED_TEXT = re.compile(r'<text number="(\d+)">\n')


def numbered_texts(user_message: str) -> list[tuple[int, str]]:
    """The ``(number, text)`` of a packed request's ``<text number="N">`` elements, in order; [] for a message of
    one text. Each text runs to the ``</text>`` before the next element (or the message's last ``</text>``)."""
    marks = list(_NUMBERED_TEXT.finditer(user_message))
    if not marks:
        return []
    found = []
    for mark, following in zip(marks, [*marks[1:], None], strict=True):
        end = following.start() if following is not None else len(user_message)
        body = user_message[mark.end() : end]
        close = body.rfind("</text>")
        found.append((int(mark[1]), (body[:close] if close >= 0 else body).strip()))
    return found


def record_text(user_message: str) -> str:
    """The record inside the prompt's ``<text>...</text>`` wrapper, or the whole message when unwrapped."""
    start = user_message.find("<text>")
    end = user_message.rfind("</text>")
    if start >= 0 and end > start:
        return user_message[start + len("<text>") : end].strip()
    return user_message.strip()


# --------------------------------------------------------------------------------------------------------
# The offline classifier
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Weights:
    """The scorer's knobs. Defaults were tuned on the two labelled sets of travel calls the product ships and tests
    with (``sample-data/travel_calls.csv`` and the seed spreadsheet), using only the travel task's prompt: figures
    measured on those sets are not held-out figures. Nothing in the code refers to a particular task."""

    # How much each part of a category's description in the prompt contributes to its profile.
    name: float = 2.0
    alias: float = 2.0
    description: float = 1.0
    example: float = 1.0
    reasoning: float = 0.0
    bad_example_moved: float = 1.0  # a bad example's text, credited to the category it belongs to
    field: float = 1.0  # a word's lexicon group, relative to the word itself
    idf_power: float = 2.0  # sharpness of the discount for terms that many categories share
    norm_power: float = 1.0  # 1: cosine; less favours categories described at length
    # How much each part of the record counts.
    first_turn: float = 2.0  # the customer's first turn (where the reason for a call is usually stated)
    customer_turn: float = 1.0
    turn_decay: float = 0.85  # each later customer turn counts this much of the one before
    agent_turn: float = 0.8
    intent: float = 0.5  # extra weight for what follows "I'd like to", "can you", ... in customer turns
    name_cue_bonus: float = 0.03  # per word of a category's name (or alias) found in the record


@dataclass
class _Scorer:
    prompt: ParsedPrompt
    vectors: list[dict[str, float]]
    cues: list[frozenset[str]]
    abstain: str  # the answer that names no category (see ABSTAIN_ANSWERS)
    # term → (category, weight) for each category whose vector has the term: a text's terms are looked up once each
    postings: dict[str, list[tuple[int, float]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for i, vector in enumerate(self.vectors):
            for term, weight in vector.items():
                self.postings.setdefault(term, []).append((i, weight))


# What the classifier answers when it abstains: the first of these that is not a category's name or alias, so that
# the pipeline's label matcher finds no category in it and the row ends ``off_list`` with this answer kept.
ABSTAIN_ANSWERS = ("none", "no category", "unclassified")
# Scores closer than this are a tie.
_TIE = 1e-9


class OfflineClassifier:
    """A deterministic local stand-in for an LLM classifier: keyword profiles built from the prompt, no network.

    Terms are lower-cased, lightly stemmed content words, each also counted as its group in the general-purpose
    lexicon when it has one (:mod:`.lexicon`, hand-written from general English). Each category's profile sums
    the terms of its name (weighted most), aliases, description and good examples, and of the bad examples listed
    elsewhere that belong to it; terms
    shared by many categories are discounted (an IDF over the categories) and the profile is normalised. A
    record's terms are weighted by who says them: the customer's first turn most (the reason for a call is
    usually stated first), later customer turns less and less, the agent's turns less, and what follows "I'd
    like to", "can you", ... a little more. The category with the highest dot product wins, with a small bonus
    for each word of its name found in the record. With no evidence (every score zero) or no margin (the best
    categories tie) it abstains and answers ``none`` (see the module's notes). The explanation names the words
    that contributed most. Same request, same reply: no randomness, no clock.
    """

    name = "offline-classifier"
    _CACHE_SIZE = 16
    # Pure computation, the same answer in any process: the local Bedrock answers a job's records in processes of
    # their own (see bedrock_answers), to which the classifier goes as its weights.
    answers_in_processes = True

    def __init__(self, weights: Weights | None = None) -> None:
        self.weights = weights or Weights()
        self._scorers: OrderedDict[str, _Scorer] = OrderedDict()
        self._lock = threading.Lock()  # the local Bedrock may call from several threads

    def __reduce__(self) -> tuple[type[OfflineClassifier], tuple[Weights]]:
        return OfflineClassifier, (self.weights,)

    def complete(self, system: str, messages: list[dict[str, Any]], max_tokens: int) -> Completion:
        scorer = self._scorer(system)
        user = next((m for m in reversed(messages) if m.get("role", "user") == "user"), None)
        user_text = message_text(user.get("content")) if user else ""
        packed = numbered_texts(user_text)
        if packed:
            reply = "\n".join(
                f'<answer number="{number}">\n{self._answer(scorer, text)}\n</answer>' for number, text in packed
            )
        else:
            reply = self._answer(scorer, record_text(user_text))
        seen = system + "".join(message_text(m.get("content")) for m in messages)
        stop = "end_turn"
        if estimate_tokens(reply) > max_tokens:
            reply, stop = reply[: max(1, max_tokens) * 4], "max_tokens"
        return Completion(reply, estimate_tokens(seen), estimate_tokens(reply), stop)

    def _answer(self, scorer: _Scorer, text: str) -> str:
        """The answer to one text, in the tags the prompt asks for; ``none`` when it abstains."""
        label, cues, sure = self._classify(scorer, text)
        shown = ", ".join(f'"{c}"' for c in cues)
        if label is not None:
            why = f"strongest cues {shown} for {label}."
        elif cues:
            why = f"abstains: the cues {shown} favour no category over another."
        else:
            why = "abstains: no word of the text matches any category."
        tags = scorer.prompt
        answer = label if label is not None else scorer.abstain
        reply = f"<{tags.label_tag}>{answer}</{tags.label_tag}>\n<{tags.explanation_tag}>Offline classifier: {why}"
        reply += f"</{tags.explanation_tag}>"
        if tags.confidence_tag:  # asked for: its score margin, as a whole number 0..100 (0 when it abstains)
            reply += f"\n<{tags.confidence_tag}>{sure}</{tags.confidence_tag}>"
        return reply

    def classify(self, system: str, text: str) -> tuple[str | None, list[str]]:
        """The category for a record's text under a system prompt (None: it abstains), and the words that decided
        it (for an abstention on a tie, the words the tied categories share)."""
        label, cues, _ = self._classify(self._scorer(system), text)
        return label, cues

    # -- building the profiles -------------------------------------------------------------------------

    def _scorer(self, system: str) -> _Scorer:
        """The scorer for a system prompt, built once per distinct prompt (the same one repeats every record)."""
        with self._lock:
            scorer = self._scorers.get(system)
            if scorer is not None:
                self._scorers.move_to_end(system)
                return scorer
        scorer = self._build(parse_prompt(system))
        with self._lock:
            self._scorers[system] = scorer
            if len(self._scorers) > self._CACHE_SIZE:
                self._scorers.popitem(last=False)
        return scorer

    def _build(self, prompt: ParsedPrompt) -> _Scorer:
        if not prompt.categories:
            raise ModelRequestInvalid(
                "The system prompt lists no <category> with a <name>, so the offline classifier has nothing to "
                "choose from."
            )
        w = self.weights
        index = {c.name: i for i, c in enumerate(prompt.categories)}
        raw: list[dict[str, float]] = [{} for _ in prompt.categories]

        def add(i: int, text: str, weight: float) -> None:
            for term, factor in terms(text, w.field):
                raw[i][term] = raw[i].get(term, 0.0) + weight * factor

        cues = []
        for i, category in enumerate(prompt.categories):
            add(i, category.name, w.name)
            for alias in category.aliases:
                add(i, alias, w.alias)
            add(i, category.description, w.description)
            for example in category.examples:
                add(i, example.text, w.example)
                add(i, example.reasoning, w.reasoning)
            for bad in category.bad_examples:
                target = index.get(bad.correct or "")
                if target is not None:
                    add(target, bad.text, w.bad_example_moved)
                    add(target, bad.reasoning, w.reasoning / 2)
            cues.append(frozenset(t for t, _ in terms(" ".join((category.name, *category.aliases)))))
        count = len(raw)
        df: dict[str, int] = {}
        for profile in raw:
            for term, value in profile.items():
                if value > 0:
                    df[term] = df.get(term, 0) + 1
        vectors = []
        for profile in raw:
            vector = {t: v * math.log(1 + count / df[t]) ** w.idf_power for t, v in profile.items() if v > 0}
            norm = math.sqrt(sum(v * v for v in vector.values())) ** w.norm_power or 1.0
            vectors.append({t: v / norm for t, v in vector.items()})
        taken = {n.casefold() for c in prompt.categories for n in (c.name, *c.aliases)}
        abstain = next((a for a in ABSTAIN_ANSWERS if a not in taken), ABSTAIN_ANSWERS[-1])
        return _Scorer(prompt, vectors, cues, abstain)

    # -- scoring a record ------------------------------------------------------------------------------

    def _document(self, text: str) -> tuple[dict[str, float], dict[str, str]]:
        w = self.weights
        weights: dict[str, float] = {}
        surface: dict[str, str] = {}
        customer_seen = 0
        for turn in split_turns(text):
            if turn.customer:
                weight = w.first_turn if customer_seen == 0 else w.customer_turn * w.turn_decay ** (customer_seen - 1)
                customer_seen += 1
            else:
                weight = w.agent_turn
            found = [(term, word, is_field, weight) for term, word, is_field in words(turn.text)]
            if turn.customer and w.intent:
                found += [(term, word, is_field, weight * w.intent) for term, word, is_field in intent_words(turn.text)]
            for term, word, is_field, turn_weight in found:
                weights[term] = weights.get(term, 0.0) + turn_weight * (w.field if is_field else 1.0)
                surface.setdefault(term, word)
        return {t: math.log1p(v) for t, v in weights.items()}, surface

    def _classify(self, scorer: _Scorer, text: str) -> tuple[str | None, list[str], int]:
        document, surface = self._document(text)
        found: list[dict[str, float]] = [{} for _ in scorer.vectors]  # per category: its terms in the text's order
        for t, v in document.items():
            for i, weight in scorer.postings.get(t, ()):
                found[i][t] = v * weight
        scored = []
        for i, parts in enumerate(found):
            score = sum(parts.values())
            if self.weights.name_cue_bonus:
                score += self.weights.name_cue_bonus * sum(1 for t in scorer.cues[i] if t in document)
            scored.append((score, i, parts))
        scored.sort(key=lambda s: (-s[0], s[1]))
        best_score, best, best_parts = scored[0]
        tied = len(scored) > 1 and best_score - scored[1][0] <= _TIE
        cues: list[str] = []
        for term in sorted(best_parts, key=lambda t: (-best_parts[t], t)):
            if best_parts[term] > 0 and surface[term] not in cues:
                cues.append(surface[term])
        if best_score <= _TIE or tied:
            return None, cues[:3], 0  # no evidence, or no margin between the best categories: abstain
        runner_up = scored[1][0] if len(scored) > 1 else 0.0
        return scorer.prompt.categories[best].name, cues[:3], confidence(best_score, runner_up)


def confidence(best: float, runner_up: float) -> int:
    """The offline classifier's confidence in its best category, 50..100: 50 plus half its score margin over the
    runner-up, relative to its own score (100: nothing else scored; near 50: a near tie). Deterministic."""
    margin = (best - max(runner_up, 0.0)) / best if best > 0 else 0.0
    return round(50 + 50 * min(max(margin, 0.0), 1.0))

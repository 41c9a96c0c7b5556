"""Caption hygiene: the rewrites users make by hand to BLIP captions before training, made automatic and reported.

The seed guides' rules: every caption starts with the same class phrase ("a woman", not "a young woman", "a girl",
"an Asian woman"); BLIP's redundancies go ("wearing a hat with a hat on her head and a white hat"); its artefacts go
("arafed", "araffe"); commas and spaces are tidy; optionally the comma-phrase form "a woman, with {hair}, wearing
{outfit}, ...". Each rewrite comes back as a `CaptionEdit`, so nothing changes silently, and a cleaned caption
cleans to itself. Order: punctuation, then artefacts, repeats and the class phrase run to a fixed point (one rewrite
can expose another: "a young woman and a woman" -> "a woman and a woman"), then the comma-phrase form.

What a subject mention is: an optional determiner, adjectives BLIP puts on people and pets, and a noun of the class
phrase's group ("there is a young blonde woman" -> "a woman with blonde hair"). Identity adjectives (age, looks,
ethnicity) are dropped: the seed keeps "a woman" consistent and lets the embedding learn the rest. Hair colour and
expression vary between pictures, and the seed says to spell out what varies, so they are kept after the class
phrase ("with blonde hair", "smiling").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.caption.hygiene_vocabulary import (
    ARTIFACT,
    BOW,
    DETERMINERS,
    EOW,
    EXPRESSION,
    FOLLOW,
    FOLLOWERS,
    GROUPS,
    HAIR,
    HAIR_WORD,
    ING_NOUNS,
    KIND_ART,
    MOD,
    NOT_COUNTABLE,
    OPENER,
    PEOPLE_AND_PETS,
    PLURAL_DETERMINERS,
    PLURALS,
    RELATIVE,
    alternation,
    words,
)

__all__ = ["HygieneSettings", "CaptionEdit", "CleanCaption", "clean_caption", "tidy", "RULES"]

RULES = ("CLASS_PHRASE", "SUBJECT_VARIANT", "REPEAT", "ARTIFACT", "PUNCTUATION", "COMMA_PHRASE")
_MAX_PASSES = 4  # each pass only drops or normalises text: a fixed point comes within two passes in practice


@dataclass(frozen=True)
class HygieneSettings:
    enabled: bool | None = None  # None: on exactly when class_phrase is given
    class_phrase: str = ""  # e.g. "a woman": every caption is made to start with it
    subject_variants: tuple[str, ...] = ()  # extra variants besides the built-in ones, e.g. ("an actress",)
    collapse_repeats: bool = True
    drop_artifacts: bool = True
    comma_phrases: bool = False  # "a woman, sitting on a bench" instead of "a woman sitting on a bench"

    @property
    def active(self) -> bool:
        return bool(self.class_phrase.strip()) if self.enabled is None else self.enabled


@dataclass(frozen=True)
class CaptionEdit:
    rule: str  # one of RULES
    before: str  # the fragment (or whole caption) before the rewrite
    after: str  # the same fragment after it ("" when it was dropped)


@dataclass(frozen=True)
class CleanCaption:
    caption: str
    raw: str
    edits: tuple[CaptionEdit, ...]


def clean_caption(raw: str, settings: HygieneSettings) -> CleanCaption:
    """`raw` with the rules `settings` turn on; `edits` lists every rewrite in the order made."""
    if not settings.active:
        return CleanCaption(caption=raw, raw=raw, edits=())
    subject = (
        _Subject.build(settings.class_phrase, settings.subject_variants) if settings.class_phrase.strip() else None
    )
    edits: list[CaptionEdit] = []
    text = _whole(edits, "PUNCTUATION", raw, tidy(raw))
    for _ in range(_MAX_PASSES):
        start = text
        if settings.drop_artifacts:
            text = _fragments(edits, "ARTIFACT", text, _drop_artifacts(text, subject))
        if settings.collapse_repeats:
            text = _fragments(edits, "REPEAT", text, _collapse_repeats(text))
        if subject is not None:
            text = _class_phrase_first(edits, text, subject)
        if text == start:
            break
    if subject is not None and settings.comma_phrases:
        text = _whole(edits, "COMMA_PHRASE", text, _comma_phrases(text, subject.phrase))
    return CleanCaption(caption=text, raw=raw, edits=tuple(edits))


def _whole(edits: list[CaptionEdit], rule: str, before: str, after: str) -> str:
    if after != before:
        edits.append(CaptionEdit(rule=rule, before=before, after=after))
    return after


def _fragments(edits: list[CaptionEdit], rule: str, text: str, result: tuple[str, list[tuple[str, str]]]) -> str:
    new_text, changes = result
    edits.extend(CaptionEdit(rule=rule, before=before, after=after) for before, after in changes)
    # A dropped word leaves a double space or a stray comma; that is part of the same rewrite.
    return tidy(new_text) if changes else text


# --- punctuation ------------------------------------------------------------------------------------------------

_TIDY = (
    (re.compile(r"\s+"), " "),
    (re.compile(r"(?<=\w) ' (?=s\b)"), "'"),  # BLIP's "woman ' s"
    (re.compile(r"(?<=\w) - (?=\w)"), "-"),  # BLIP's "t - shirt", "close - up", "black - and - white"
    (re.compile(r"\s+(?=[,.;:!?])"), ""),  # no space before punctuation
    (re.compile(r",(?:\s*,)+"), ","),  # ",," and ", ,"
    (re.compile(r",(?=[.;:!?])"), ""),  # ",." -> "."
    (re.compile(r"(?<!\d),(?=\S)|,(?=[^\s\d])"), ", "),  # a space after a comma, but "1,000" stays
    (re.compile(r"^[\s,;]+|[\s,;]+$"), ""),  # no leading or trailing comma
    (re.compile(r"\s{2,}"), " "),
)


def tidy(text: str) -> str:
    """Commas and spaces tidied; the words are not touched."""
    for _ in range(3):  # the rules feed each other once at most (", ," -> "," -> ", ")
        before = text
        for pattern, replacement in _TIDY:
            text = pattern.sub(replacement, text)
        text = text.strip()
        if text == before:
            break
    return text


@dataclass(frozen=True)
class _Subject:
    phrase: str  # the class phrase as the user wrote it
    noun: str  # its noun, e.g. "woman"; replaces a BLIP artefact used as a noun
    mention: re.Pattern[str]  # a mention of the subject: determiner, adjectives, noun

    @classmethod
    def build(cls, class_phrase: str, variants: tuple[str, ...]) -> _Subject:
        phrase = " ".join(class_phrase.split())
        tokens = phrase.lower().split()
        known = [t for t in tokens if t in PEOPLE_AND_PETS]
        noun = known[0] if known else tokens[-1]
        plural = noun in PLURALS
        nouns = {noun}
        for singular, plurals in GROUPS:
            if noun in singular or noun in plurals:
                nouns |= plurals if plural else singular
        for variant in variants:  # "an actress" -> "actress": determiners and adjectives still apply
            variant_words = variant.lower().split()
            if variant_words and variant_words[0] in DETERMINERS | PLURAL_DETERMINERS:
                variant_words = variant_words[1:]
            if variant_words:
                nouns.add(" ".join(variant_words))
        # "female"/"male" are adjectives before another noun ("a female doctor"): nouns only when followed by what
        # may follow a subject.
        noun_alt = "|".join(
            rf"(?:{alternation([n])}){FOLLOW}" if n in ("female", "male", "females", "males") else alternation([n])
            for n in sorted(nouns, key=len, reverse=True)
        )
        dets = alternation(PLURAL_DETERMINERS if plural else DETERMINERS)
        mention = re.compile(
            rf"{BOW}(?:(?:{dets})\s+)?(?P<mods>(?:{MOD}(?:\s*,\s*|\s+and\s+|\s+)){{0,6}})(?P<noun>{noun_alt}){EOW}",
            re.I,
        )
        return cls(phrase=phrase, noun=noun, mention=mention)


def _article(word: str) -> str:
    lower = word.lower()
    vowel = lower[:1] in ("a", "e", "i", "o", "u") and not lower.startswith(("uni", "use", "usu", "eu", "one"))
    return "an" if vowel or lower.startswith(("hour", "honest", "heir")) else "a"


def _countable(word: str) -> bool:
    """Whether `word` takes "a"/"an" (singular noun or adjective, not a determiner, number or plural)."""
    lower = word.lower()
    plural = lower.endswith("s") and not lower.endswith(("ss", "us", "is")) or lower in PLURALS
    return not plural and lower not in NOT_COUNTABLE and not lower.isdigit()


def _continues(word: str) -> bool:
    """Whether `word` can follow a subject noun directly ("sitting", "with", "in")."""
    lower = word.lower()
    return lower in FOLLOWERS or (lower.endswith("ing") and lower not in ING_NOUNS and len(lower) > 4)


# --- artefacts --------------------------------------------------------------------------------------------------


def _drop_artifacts(text: str, subject: _Subject | None) -> tuple[str, list[tuple[str, str]]]:
    changes: list[tuple[str, str]] = []

    def replace(match: re.Match[str]) -> str:
        det, nxt = match["det"], match["next"]
        if nxt is None or _continues(nxt) or nxt.lower() in ("that", "which", "is", "are"):
            # Used as a noun ("there is a araffe sitting on a bench"): it stands for the subject. Without a
            # class phrase "person" is the best guess: BLIP writes these almost only about people.
            noun = subject.noun if subject else "person"
            det = det if det and det.lower() == "the" else (_article(noun) if _countable(noun) else "")
            after = " ".join(w for w in (det, noun, nxt) if w)
        else:
            # Used as an adjective ("arafed woman", "an arafed image of"): BLIP puts it where the article goes.
            if det and det.lower() == "the":
                new_det = det
            else:
                new_det = _article(nxt) if _countable(nxt) else ""
            after = " ".join(w for w in (new_det, nxt) if w)
        changes.append((match[0], after))
        return after

    return ARTIFACT.sub(replace, text), changes


# --- repeats ----------------------------------------------------------------------------------------------------

_REPEATED_WORD = re.compile(r"(?<![\w'-])([a-z][\w'-]*)(?:\s+\1)+(?![\w'-])", re.I)  # "a a", "the the"
# The same 2-6 words again, directly or after a comma, "and" or "with" ("sitting on a bench sitting on a bench").
_REPEATED_PHRASE = re.compile(
    r"(?<![\w'-])([a-z][\w'-]*(?:\s+[\w'-]+){1,5})(?:(?:\s*,\s*|\s+(?:and|with)\s+|\s+)\1)+(?![\w'-])", re.I
)
_NP_DETERMINERS = "a|an|the|her|his|its|their|my|your|some"
_FUNCTION = words("a an the her his its their my your some and with on in of at to is are that who wearing has have")
# What may stand between two mentions of the same thing for them to be one thing said twice: "a hat with a hat
# on her head and a white hat" is one white hat.
_FILLER = re.compile(
    r"(?:\s|,|\b(?:and|with|wearing|has|have|that|is|in|on|of|her|his|its|their|the|top\s+of|head|face|hair|neck)\b)*",
    re.I,
)
_NOT_HEADS = _FUNCTION | PEOPLE_AND_PETS | words("head face hair neck top")
# A head noun ends its phrase: "a bikini top and a bikini bottom" mentions no bikini twice.
_HEAD_FOLLOWERS = alternation(_FUNCTION | FOLLOWERS | {"around", "over", "for", "to"})
_HEAD_END = rf"(?=\s*(?:$|[,.;:!?]|(?:{_HEAD_FOLLOWERS}){EOW}|\w+ing{EOW}))"


def _collapse_repeats(text: str) -> tuple[str, list[tuple[str, str]]]:
    changes: list[tuple[str, str]] = []

    def keep_one(match: re.Match[str]) -> str:
        changes.append((match[0], match[1]))
        return match[1]

    text = _REPEATED_PHRASE.sub(keep_one, _REPEATED_WORD.sub(keep_one, text))
    heads = [w for w in re.findall(r"[a-z][\w'-]*", text.lower()) if w not in _NOT_HEADS]
    for head in sorted({w for w in heads if heads.count(w) > 1}):
        text = _collapse_mentions(text, head, changes)
    return text, changes


def _collapse_mentions(text: str, head: str, changes: list[tuple[str, str]]) -> str:
    """Mentions of `head` joined only by filler become the most specific one, when the others say nothing more."""
    # A determiner and up to three modifiers (any words but function words), or the bare noun.
    modifiers = rf"(?P<mods>(?:(?!(?:{alternation(_FUNCTION)}){EOW})[\w'-]+\s+){{0,3}}?)"
    mention = re.compile(rf"{BOW}(?:(?:{_NP_DETERMINERS})\s+{modifiers})?{re.escape(head)}{EOW}{_HEAD_END}", re.I)
    found = list(mention.finditer(text))
    chains: list[list[re.Match[str]]] = []
    for match in found:
        if chains and _FILLER.fullmatch(text[chains[-1][-1].end() : match.start()]):
            chains[-1].append(match)
        else:
            chains.append([match])
    for chain in reversed(chains):  # from the end, so earlier offsets stay valid
        if len(chain) < 2:
            continue
        mods = [frozenset((m["mods"] or "").lower().split()) for m in chain]
        richest = max(range(len(chain)), key=lambda i: len(mods[i]))
        if not all(m <= mods[richest] for m in mods):
            continue  # "a red car and a blue car" are two cars
        start, end = chain[0].start(), chain[-1].end()
        changes.append((text[start:end], chain[richest][0]))
        text = text[:start] + chain[richest][0] + text[end:]
    return text


# --- class phrase -----------------------------------------------------------------------------------------------


def _class_phrase_first(edits: list[CaptionEdit], text: str, subject: _Subject) -> str:
    phrase, tail = subject.phrase, ""
    if re.match(rf"{re.escape(phrase)}{EOW}", text, re.I):
        mention_end, moved, hair, expression = len(phrase), False, [], []
    else:
        match = subject.mention.search(text)
        opener = OPENER.fullmatch(text[: match.start()]) if match else None
        if match is None or opener is None:
            # Not mentioned, or after words about something else ("a man and a woman"): prepend the phrase.
            if not text:
                return text  # an empty caption stays empty, so the lint reports it instead of hiding it
            first = re.match(r"[\w'-]*", text)[0]
            return _whole(edits, "CLASS_PHRASE", text, phrase + (" " if _continues(first) else ", ") + text)
        mention_end, moved = match.end(), match.start() > 0
        hair, expression = _kept_modifiers(match["mods"])
        style = (opener["style"] or "").strip()
        tail = " ".join(filter(None, [style, _tail_kind(opener["kind"], style)]))
    rest = text[mention_end:]
    relative = RELATIVE.match(rest)
    if relative:  # "a woman that is sitting" -> "a woman sitting"; "a woman that has a hat" -> "a woman with a hat"
        rest = (" with " if relative["has"] else " ") + rest[relative.end() :]
    new_text = tidy(_rebuild(phrase, hair, expression, rest) + (", " + tail if tail else ""))
    if new_text == text:
        return text
    if moved:
        return _whole(edits, "CLASS_PHRASE", text, new_text)
    edits.append(CaptionEdit("SUBJECT_VARIANT", *_without_common_end(text, new_text)))
    return new_text


def _rebuild(phrase: str, hair: list[str], expression: list[str], rest: str) -> str:
    """The class phrase, the kept hair colour and expression, then the rest of the caption."""
    hair_phrase = ""
    if hair and re.search(r"\bhair\b", rest, re.I):  # "a blonde woman with long hair" -> "... long blonde hair"
        rest = re.sub(r"\bhair\b", " ".join(hair) + " hair", rest, count=1, flags=re.I)
    elif hair:
        hair_phrase = " with " + " ".join(hair) + " hair"
    # The expression goes after a hair phrase that opens the rest: "a woman with long hair smiling".
    lead = re.match(r"\s+with\s+(?:[\w'-]+\s+){0,3}?hair\b", rest, re.I) if expression else None
    head = phrase + hair_phrase + (lead[0] if lead else "")
    rest = rest[lead.end() :] if lead else rest
    if expression:
        head += " " + " ".join(expression)
        if re.match(r"\s+\w+ing\b", rest):
            rest = "," + rest
    elif hair_phrase and re.match(r"\s+with\s", rest, re.I):  # "... with blond hair and blue eyes", not "with, with"
        rest = " and" + rest.lstrip()[len("with") :]
    return head + rest


def _without_common_end(before: str, after: str) -> tuple[str, str]:
    """The two texts without the words they end with alike: the rewritten fragment at the front."""
    old, new = before.split(" "), after.split(" ")
    while len(old) > 1 and len(new) > 1 and old[-1] == new[-1]:
        old, new = old[:-1], new[:-1]
    return " ".join(old), " ".join(new)


def _kept_modifiers(mods: str) -> tuple[list[str], list[str]]:
    """Hair colours and expressions among a mention's adjectives (the identity ones are dropped)."""
    hair, expression = [], []
    for mod in re.findall(rf"{BOW}{MOD}{EOW}", mods or "", re.I):
        lower = " ".join(mod.lower().split())
        if re.fullmatch(HAIR, lower):
            colour = re.sub(r"(?:-|\s+)?haired$", "", lower)
            hair.append(HAIR_WORD.get(colour, colour))
        elif lower in EXPRESSION:
            expression.append(lower)
    return hair, expression


def _tail_kind(kind: str | None, style: str | None) -> str:
    """The kind of picture to keep at the end: art kinds always, plain photo kinds only with a style."""
    if not kind:
        return ""
    kind = " ".join(kind.lower().split())
    return kind if style or re.match(KIND_ART, kind) else ""


# --- comma phrases ----------------------------------------------------------------------------------------------

_PHRASE_STARTS = words("wearing holding sitting standing smiling laughing looking posing lying laying leaning walking")


def _comma_phrases(text: str, phrase: str) -> str:
    """ "a woman with long hair sitting on a bench" -> "a woman, with long hair, sitting on a bench"."""
    if not re.match(rf"{re.escape(phrase)}{EOW}", text, re.I) or len(text) == len(phrase):
        return text
    # "a woman is sitting" -> "a woman, sitting": the form lists what is true of her, without verbs.
    rest = re.sub(r"^\s+(?:is|are)\s+(?=\w+ing\b)", " ", text[len(phrase) :], flags=re.I)
    # "a woman? ..." / "a woman. ..." (stray punctuation BLIP leaves): the form's comma replaces it.
    rest = re.sub(r"^[\s.;:!?]*[.;:!?]\s*", " ", rest)
    if rest[0] == " " and not re.match(r"\s+(?:is|are|was|were|has|have)\b", rest, re.I):
        rest = "," + rest
    # A comma before each participle phrase, unless it is the verb's own ("is smiling").
    starts = alternation(_PHRASE_STARTS)
    rest = re.sub(rf"(?<=[\w')])(?<!\bis)(?<!\bare)(?<!\band)\s+(?=(?:{starts}){EOW})", ", ", rest, flags=re.I)
    return tidy(text[: len(phrase)] + rest)

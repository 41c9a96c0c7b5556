"""Generated vocabularies for the tiny test models: a byte-level CLIP BPE and a BERT word-piece list.

Nothing is downloaded: the CLIP tokenizer is built from the 256 `bytes_to_unicode` characters (and their `</w>`
end-of-word forms, as in OpenAI's vocab) plus merges generated here, so that common English words are one token and
other words fall back to a few fragments or bytes. The ids follow CLIP's order: bytes, end-of-word bytes, merges,
then `<|startoftext|>` and `<|endoftext|>` last (SD1.x pads with `<|endoftext|>`).
"""

from __future__ import annotations

from functools import cache

__all__ = ["WORDS", "FRAGMENTS", "clip_vocab_and_merges", "bert_vocab"]

# Whole-word tokens: prompt words, caption words, the synthetic world of colours/shapes/backgrounds.
WORDS: tuple[str, ...] = tuple(
    """
    a an the of on in at with and or to for by from is are it this that his her their its as
    photo picture image painting drawing portrait sketch render illustration art style close up view
    woman man girl boy person people child face hair eyes smile dog cat bird horse car house tree
    flower sky sea water mountain city street room table chair window door road field forest beach
    background foreground center left right top bottom small large big tiny little bright dark light
    red green blue yellow orange purple pink white black gray grey brown cyan magenta gold silver
    circle square triangle star heart cross ring line dot stripe shape shapes
    sitting standing walking holding wearing looking smiling playing lying
    shirt dress hat glasses jacket
    high quality detailed sharp blurry soft simple plain colorful solid texture pattern
    one two three four five many some several
    """.split()
)

# Frequent fragments, so that words outside WORDS still take only a few tokens.
FRAGMENTS: tuple[str, ...] = tuple(
    """
    th he in er an re on at en nd ti es or te of ed is it al ar st to nt ng se ha as ou io le ve co me de hi ri ro
    ic ne ea ra ce li ch ll be ma si om ur ca el ta la ns di fo ho pe ec pr no ct us ac ot il tr ly nc et ut ss so
    rs un lo wa ge ie wh ee wi em ad ol rt po we na ul ni ts mo ow pa im mi ai sh ir su id os iv ia am fi ci vi pl
    ig tu ev ld ry mp fe bl ab gh ty op wo sa ay ex ke fr oo av ag if ap gr od bo sp rd do uc bu ei ov by rm ep
    the ing and ion ent tio for ate her ter hat tha ere con res ver all ons nce men ith ted ers pro thi wit are ess
    not ive was ect rea com eve per int est sta cti ica ist ear ain one our iti rat
    ing</w> ed</w> er</w> es</w> s</w> ly</w> ion</w> tion</w> al</w> y</w> e</w> t</w> d</w> n</w> r</w>
    ment</w> ness</w> ful</w> able</w> ous</w> ity</w> ive</w> ic</w> ers</w> est</w> ry</w> ies</w>
    """.split()
)


@cache
def _byte_chars() -> dict[int, str]:
    """GPT-2/CLIP's byte -> printable character table (imported lazily: transformers is slow to import)."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return bytes_to_unicode()


def _bpe(word: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Apply BPE merges by rank to one word already split into symbols (the tokenizers BPE algorithm)."""
    while len(word) > 1:
        pairs = [(ranks.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(zip(word, word[1:], strict=False))]
        rank, i = min(pairs)
        if rank == 1 << 30:
            break
        word = word[:i] + [word[i] + word[i + 1]] + word[i + 2 :]
    return word


def _symbols(text: str, *, end_of_word: bool) -> list[str]:
    b2u = _byte_chars()
    chars = [b2u[b] for b in text.encode("utf-8")]
    if end_of_word:
        chars[-1] += "</w>"
    return chars


def _learn(target: str, *, end_of_word: bool, merges: list[tuple[str, str]], ranks: dict) -> None:
    """Append merges (leftmost pair first) until `target` is one symbol.

    New merges rank after all existing ones, so words learned earlier keep their tokenization: at every step of
    their merge sequence an older (lower-rank) merge applies first.
    """
    word = _bpe(_symbols(target, end_of_word=end_of_word), ranks)
    while len(word) > 1:
        pair = (word[0], word[1])
        ranks[pair] = len(merges)
        merges.append(pair)
        word = _bpe(word, ranks)


def clip_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The CLIP BPE vocab (token -> id) and merges list, deterministic."""
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    for fragment in FRAGMENTS:
        eow = fragment.endswith("</w>")
        _learn(fragment.removesuffix("</w>"), end_of_word=eow, merges=merges, ranks=ranks)
    for word in WORDS:
        _learn(word, end_of_word=True, merges=merges, ranks=ranks)
    chars = list(_byte_chars().values())
    tokens = chars + [c + "</w>" for c in chars]
    seen = set(tokens)
    for a, b in merges:
        if a + b not in seen:
            seen.add(a + b)
            tokens.append(a + b)
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, merges


def bert_vocab() -> list[str]:
    """BERT-style word-piece vocab for the tiny BLIP: specials, letters, `##` letters, WORDS; `[DEC]` bos last.

    Real BLIP appends `[DEC]` (its decoder bos) and `[ENC]` after bert-base-uncased's 30522 entries; so do we.
    """
    letters = "abcdefghijklmnopqrstuvwxyz0123456789"
    punctuation = list(".,!?'-:;()\"/")
    pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + punctuation + list(letters)
    pieces += ["##" + c for c in letters]
    seen = set(pieces)
    for word in WORDS:
        if word not in seen:
            seen.add(word)
            pieces.append(word)
    return pieces + ["[DEC]", "[ENC]"]

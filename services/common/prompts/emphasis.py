"""A1111's prompt emphasis syntax, parsed into (text, weight) pieces.

The rules are A1111's (`modules/prompt_parser.py`, `parse_prompt_attention`), written here from its documented
behaviour and doctests:

    (word)       x1.1          ((word))    x1.21          [word]    /1.1
    (word:1.3)   x1.3          \\( \\) \\[ \\]  literal brackets   \\\\  a literal backslash (a lone \\ is dropped)
    BREAK        ("BREAK", -1.0): the tokenizer starts a new 75-token chunk there
    unclosed brackets apply to the rest of the prompt; a stray closing bracket is plain text

Adjacent pieces of equal weight are merged *before* tokenizing, so "(unnecessary)(parens)" is the one word
"unnecessaryparens" at 1.1, exactly as A1111 tokenizes it.
"""

from __future__ import annotations

import re

__all__ = ["BREAK_WEIGHT", "EMPHASIS_MODES", "parse_emphasis"]

# "original": A1111's default for SD1.x/SD2.x (scale, then restore the mean); "no_norm": scale only (SDXL's
# default); "none": brackets are plain text and nothing is scaled.
EMPHASIS_MODES = ("original", "no_norm", "none")
BREAK_WEIGHT = -1.0  # the weight that marks a BREAK piece

_ROUND, _SQUARE = 1.1, 1 / 1.1
_EMPHASIS_TOKEN = re.compile(
    r"\\[()\[\]\\]"  # an escaped bracket or backslash: the character itself
    r"|\\"  # a lone backslash: dropped, as A1111 drops it
    r"|\(|\["  # an opening bracket
    r"|:\s*([+-]?[.\d]+)\s*\)"  # ":1.3)" closes a round bracket with an explicit weight
    r"|\)|\]"  # a closing bracket
    r"|[^\\()\[\]:]+"  # plain text
    r"|:"  # a colon that closes nothing: plain text
)
_BREAK_WORD = re.compile(r"\s*\bBREAK\b\s*", re.S)


def parse_emphasis(text: str) -> list[tuple[str, float]]:
    """[(text, weight)], with BREAK pieces as ("BREAK", -1.0); never empty (an empty prompt is [("", 1.0)])."""
    pieces: list[list] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def scale(start: int, factor: float) -> None:
        for piece in pieces[start:]:
            piece[1] *= factor

    for match in _EMPHASIS_TOKEN.finditer(text):
        token, weight = match.group(0), match.group(1)
        if token.startswith("\\"):
            pieces.append([token[1:], 1.0])
        elif token == "(":
            round_open.append(len(pieces))
        elif token == "[":
            square_open.append(len(pieces))
        elif weight is not None and round_open and _is_float(weight):
            scale(round_open.pop(), float(weight))
        elif token == ")" and round_open:
            scale(round_open.pop(), _ROUND)
        elif token == "]" and square_open:
            scale(square_open.pop(), _SQUARE)
        else:
            for i, part in enumerate(_BREAK_WORD.split(token)):
                if i:
                    pieces.append(["BREAK", BREAK_WEIGHT])
                pieces.append([part, 1.0])
    for start in round_open:
        scale(start, _ROUND)
    for start in square_open:
        scale(start, _SQUARE)
    merged: list[tuple[str, float]] = []
    for piece_text, piece_weight in pieces:
        if merged and merged[-1][1] == piece_weight:
            merged[-1] = (merged[-1][0] + piece_text, piece_weight)
        else:
            merged.append((piece_text, piece_weight))
    return merged or [("", 1.0)]


def _is_float(text: str) -> bool:
    # A1111 would raise on "(a:1.2.3)"; here a weight that is not a number leaves the bracket open, like a typo.
    try:
        float(text)
    except ValueError:
        return False
    return True

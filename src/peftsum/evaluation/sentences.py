"""Sentence splitting without downloads (nltk's punkt data is not installable offline)."""

from __future__ import annotations

import re

# A sentence ends at . ! or ? (optionally followed by closing quotes or brackets), then
# whitespace, then something that can open a sentence. Common abbreviations do not end one.
_BOUNDARY = re.compile(r"(?<=[.!?])[\"'”’)\]]*\s+(?=[\"'“‘(\[]?[A-Z0-9])")
_ABBREVIATIONS = {"mr.", "mrs.", "ms.", "dr.", "prof.", "st.", "jr.", "sr.", "vs.", "e.g.",
                  "i.e.", "etc.", "inc.", "ltd.", "co.", "no.", "u.s.", "u.k.", "gen.", "sen.",
                  "rep.", "gov.", "lt.", "col.", "sgt.", "capt.", "jan.", "feb.", "aug.", "sept.",
                  "oct.", "nov.", "dec.", "et al."}


def split_sentences(text: str) -> list[str]:
    """Sentences of text; newlines always end a sentence."""
    sentences = []
    for line in text.splitlines():
        pieces = _BOUNDARY.split(line.strip())
        merged: list[str] = []
        for piece in pieces:
            last_word = merged[-1].rsplit(None, 1)[-1].lower() if merged else ""
            if merged and (last_word in _ABBREVIATIONS or re.fullmatch(r"[a-z]\.", last_word)):
                merged[-1] += " " + piece
            else:
                merged.append(piece)
        sentences += [s for s in merged if s]
    return sentences


def lead(text: str, n: int = 3) -> str:
    """The first n sentences, one per line."""
    return "\n".join(split_sentences(text)[:n])

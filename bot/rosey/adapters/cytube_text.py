"""CyTube's text rules, for the CyTube adapter: how long a message may be, and what ``msg`` holds.

The CyTube server (calzoneman/sync, ``src/channel/chat.js``) cuts an incoming chat message or
PM with JavaScript's ``msg.substring(0, max-chat-message-length)``: the limit counts UTF-16 code
units, so an emoji outside the Basic Multilingual Plane costs two, and a cut can fall inside
one. :func:`split_utf16` splits a reply so that no piece is ever cut.

A message that starts with ``/`` is a chat command there (``/clear``, ``/kick NAME``, ``/me``
...), run with the bot's rank: :func:`split_utf16` starts such a piece with a space, which the
server keeps and a browser does not show, so a reply can never run a command.

Inbound, the server hands out HTML: ``XSS.sanitizeText`` escapes ``& < > " ' ( )``, the
channel's filters add tags (``*bold*`` -> ``<strong>bold</strong>``, links -> ``<a>``).
:func:`html_to_text` turns that back into the plain text the user typed (the markup of filters
is lost).

Plugin-process side: imports only the standard library.
"""

from __future__ import annotations

import unicodedata
from html.parser import HTMLParser

__all__ = ["html_to_text", "split_utf16", "utf16_len"]


def utf16_len(text: str) -> int:
    """Length as JavaScript counts it (UTF-16 code units)."""
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def _cut(line: str, limit: int) -> tuple[str, str]:
    """The longest head of ``line`` within ``limit`` units (at a space when one is in its
    second half), and the rest."""
    end, units = 0, 0
    for char in line:
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit:
            break
        end += 1
    end = max(end, 1)  # a limit of 1 and an astral character: send it whole, the server cuts
    # Never split a base character from its combining marks (é as e + U+0301).
    while 1 < end < len(line) and unicodedata.combining(line[end]):
        end -= 1
    space = line.rfind(" ", 0, end + 1)
    if end < len(line) and space > end // 2:
        return line[:space], line[space + 1 :]
    return line[:end], line[end:]


def _split_line(line: str, limit: int) -> list[str]:
    pieces = []
    while utf16_len(line) > limit:
        head, line = _cut(line, limit)
        if head:
            pieces.append(head)
    if line:
        pieces.append(line)
    return pieces


def split_utf16(text: str, limit: int) -> list[str]:
    """Pieces of ``text`` that each fit ``limit`` UTF-16 units: one or more per non-blank line,
    broken at a space near the end when there is one, never inside a character; a piece that
    would start with ``/`` starts with a space instead (never a chat command)."""
    if limit < 2:
        raise ValueError("the limit must be at least 2 (a slash and a space)")
    pieces: list[str] = []
    for raw in text.split("\n"):
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        for piece in _split_line(line, limit):
            if not piece.startswith("/"):
                pieces.append(piece)
                continue
            # One unit goes to the space: split again at limit - 1 if needed.
            for part in _split_line(piece, limit - 1):
                pieces.append(" " + part if part.startswith("/") else part)
    return pieces


class _TextOnly(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self.parts.append("\n")
        elif tag == "img":  # an image filter: keep something readable
            alt = dict(attrs).get("alt") or dict(attrs).get("src")
            if alt:
                self.parts.append(alt)


def html_to_text(msg: str) -> str:
    """The text a CyTube ``msg`` shows: tags dropped, entities decoded (``&#40;`` -> ``(``)."""
    if "<" not in msg and "&" not in msg:
        return msg
    parser = _TextOnly()
    try:
        parser.feed(msg)
        parser.close()
    except Exception:  # a parser bug must not lose the message: fall back to the raw text
        return msg
    return "".join(parser.parts)

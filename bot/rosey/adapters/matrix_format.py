"""Matrix message bodies: Markdown out as safe HTML, reply fallbacks off what comes in.

Outbound, a plugin's text is the plain ``body`` as written, and, when it holds any Markdown,
also a ``formatted_body`` (``format: org.matrix.custom.html``) rendered by the ``markdown``
package. A plugin's text is not trusted to carry HTML: raw HTML in it is never passed through
(Markdown's raw-HTML block and inline patterns are switched off, so ``<script>`` is shown as
text), and what Markdown produced is then filtered again against the tags the Matrix spec
suggests clients render, with links only to ``https``, ``http``, ``mailto`` and ``matrix`` URIs
and no images (Matrix images need ``mxc://`` media the bot does not upload).

Inbound, a reply written by an older client starts with a quote of the message it answers
(``> <@alice:example.org> ...``, the "reply fallback" the spec has since dropped);
:func:`strip_reply_fallback` removes it, so that ``!echo hi`` sent as a reply is still a command.

Plugin-process side: the standard library and ``markdown`` only.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

import markdown

__all__ = ["render_markdown", "sanitize_html", "strip_reply_fallback"]

#: Tags kept in a formatted body (what Markdown produces that the Matrix spec lists as safe).
_ALLOWED_TAGS = frozenset(
    "p br strong em b i u s del code pre blockquote ul ol li a h1 h2 h3 h4 h5 h6 hr "
    "table thead tbody tr th td sup sub".split()
)
_VOID_TAGS = frozenset({"br", "hr"})
_SAFE_LINK = re.compile(r"^(https?://|mailto:|matrix:)", re.IGNORECASE)
_CODE_CLASS = re.compile(r"^language-[A-Za-z0-9_+-]{1,40}$")
#: Tags whose content is dropped along with them (never shown as text).
_DROPPED_WITH_CONTENT = frozenset({"script", "style"})


class _Sanitizer(HTMLParser):
    """Re-emits only allowed tags and attributes; all text is escaped again."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.text: list[str] = []
        self.rich = False  # any tag beyond <p> and <br>, i.e. formatting a plain body cannot show
        self._open: list[str] = []
        self._dropping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _DROPPED_WITH_CONTENT:
            self._dropping += 1
            return
        if self._dropping:
            return
        if tag == "img":  # no mxc:// media: keep the alternative text
            alt = dict(attrs).get("alt")
            if alt:
                self.handle_data(alt)
            return
        if tag not in _ALLOWED_TAGS:
            return
        kept = ""
        values = dict(attrs)
        if tag == "a":
            href = values.get("href") or ""
            if not _SAFE_LINK.match(href.strip()):
                self.rich = True
                self._open.append("a-dropped")
                return
            kept = f' href="{html.escape(href.strip(), quote=True)}"'
        elif tag == "code" and _CODE_CLASS.match(values.get("class") or ""):
            kept = f' class="{values["class"]}"'
        elif tag == "ol" and (values.get("start") or "").isdigit():
            kept = f' start="{int(values["start"] or 1)}"'
        if tag not in ("p", "br"):
            self.rich = True
        if tag in _VOID_TAGS:
            self.out.append(f"<{tag}/>" if tag == "hr" else "<br/>")
            if tag == "br":
                self.text.append("\n")
            return
        self._open.append(tag)
        self.out.append(f"<{tag}{kept}>")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID_TAGS and tag != "img" and tag in _ALLOWED_TAGS:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _DROPPED_WITH_CONTENT:
            self._dropping = max(0, self._dropping - 1)
            return
        if self._dropping or tag not in _ALLOWED_TAGS or tag in _VOID_TAGS:
            return
        if tag == "a" and self._open and self._open[-1] == "a-dropped":
            self._open.pop()
            return
        if tag in self._open:  # close what is open, innermost first (never an unbalanced tree)
            while self._open:
                inner = self._open.pop()
                if inner != "a-dropped":
                    self.out.append(f"</{inner}>")
                if inner == tag:
                    break

    def handle_data(self, data: str) -> None:
        if self._dropping:
            return
        self.out.append(html.escape(data, quote=False))
        self.text.append(data)

    def result(self) -> str:
        while self._open:
            inner = self._open.pop()
            if inner != "a-dropped":
                self.out.append(f"</{inner}>")
        return "".join(self.out).strip()


def _converter() -> markdown.Markdown:
    converter = markdown.Markdown(extensions=["fenced_code", "nl2br", "sane_lists"])
    # Raw HTML in the text stays text: no block of it, no inline tag of it is passed through.
    converter.preprocessors.deregister("html_block")
    converter.inlinePatterns.deregister("html")
    return converter


_CONVERTER = _converter()


def sanitize_html(fragment: str) -> tuple[str, bool, str]:
    """``fragment`` reduced to allowed tags: (html, whether it has formatting, its text)."""
    sanitizer = _Sanitizer()
    sanitizer.feed(fragment)
    sanitizer.close()
    return sanitizer.result(), sanitizer.rich, "".join(sanitizer.text)


def render_markdown(text: str) -> str | None:
    """The ``formatted_body`` for ``text``, or None when plain text shows it as well."""
    rendered = _CONVERTER.reset().convert(text)
    safe, rich, shown = sanitize_html(rendered)
    if not rich and _squash(shown) == _squash(text):
        return None
    return safe


def _squash(text: str) -> str:
    return " ".join(text.split())


def strip_reply_fallback(body: str) -> str:
    """``body`` without the quoted lines an older client put before a reply's own text."""
    if not body.startswith(">"):
        return body
    lines = body.split("\n")
    index = 0
    while index < len(lines) and lines[index].startswith(">"):
        index += 1
    if index < len(lines) and lines[index] == "":
        index += 1
    return "\n".join(lines[index:])

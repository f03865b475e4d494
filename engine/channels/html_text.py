"""A plain-text rendering of an email's HTML, for the ``text/plain`` alternative.

Mail clients that show text, screen readers and spam filters read the plain part, so it
keeps what matters: paragraphs and line breaks, list items, headings, image alt text and
link targets (``label (https://...)``). Scripts, styles and the head are dropped.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

#: Blocks set off by a blank line; other blocks start on a line of their own.
PARAGRAPHS = frozenset(
    {"p", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "table", "hr", "blockquote", "pre"}
)
BLOCKS = PARAGRAPHS | {
    *("address", "article", "aside", "center", "dd", "div", "dl", "dt", "fieldset"),
    *("figcaption", "figure", "footer", "form", "header", "li", "main", "nav", "section"),
    *("tbody", "td", "tfoot", "th", "thead", "tr"),
}
SKIPPED = frozenset({"head", "script", "style", "title", "template"})


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.pending = 0  # line breaks owed before the next text
        self.skipping = 0
        self.links: list[tuple[str | None, int]] = []  # (href, where its label starts)

    def _break(self, lines: int) -> None:
        if self.out:
            self.pending = max(self.pending, lines)

    def _emit(self, text: str) -> None:
        if self.pending:
            if not text.strip():
                return
            self.out.append("\n" * self.pending)
            self.pending = 0
            text = text.lstrip()
        self.out.append(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in SKIPPED:
            self.skipping += 1
        elif tag == "br":
            self.out.append("\n")
        elif tag in BLOCKS:
            self._break(2 if tag in PARAGRAPHS else 1)
            if tag == "li":
                self._emit("- ")
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt:
                self._emit(alt)
        elif tag == "a":
            self.links.append((dict(attrs).get("href"), len(self.out)))

    def handle_endtag(self, tag: str) -> None:
        if tag in SKIPPED:
            self.skipping = max(0, self.skipping - 1)
        elif tag in BLOCKS:
            self._break(2 if tag in PARAGRAPHS else 1)
        elif tag == "a" and self.links:
            href, start = self.links.pop()
            label = " ".join("".join(self.out[start:]).split())
            if href and not href.startswith("#") and href != label:
                self._emit(f" ({href})" if label else href)

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self._emit(re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    """Readable plain text for ``html``."""
    parser = _TextParser()
    parser.feed(html)
    parser.close()
    lines = [line.strip() for line in "".join(parser.out).split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"

"""A plain-text rendering of an email's HTML, for the ``text/plain`` alternative.

Mail clients that show text, screen readers and spam filters read the plain part, so it
keeps what matters: paragraphs and line breaks, list items, headings, image alt text and
link targets (``label (https://...)``). Scripts, styles and the head are dropped.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

BLOCKS = frozenset(
    {
        *("address", "article", "aside", "blockquote", "center", "dd", "div", "dl", "dt"),
        *("fieldset", "figcaption", "figure", "footer", "form", "header", "hr", "li"),
        *("h1", "h2", "h3", "h4", "h5", "h6", "main", "nav", "ol", "p", "pre", "section"),
        *("table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul"),
    }
)
SKIPPED = frozenset({"head", "script", "style", "title", "template"})


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skipping = 0
        self.links: list[str | None] = []
        self.link_text: list[list[str]] = []

    def _emit(self, text: str) -> None:
        if self.link_text:
            self.link_text[-1].append(text)
        self.out.append(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in SKIPPED:
            self.skipping += 1
        elif tag == "br":
            self._emit("\n")
        elif tag in BLOCKS:
            self._emit("\n\n" if tag in {"p", "h1", "h2", "h3", "table", "hr"} else "\n")
            if tag == "li":
                self._emit("- ")
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt:
                self._emit(alt)
        elif tag == "a":
            self.links.append(dict(attrs).get("href"))
            self.link_text.append([])

    def handle_endtag(self, tag: str) -> None:
        if tag in SKIPPED:
            self.skipping = max(0, self.skipping - 1)
        elif tag in BLOCKS:
            self._emit("\n")
        elif tag == "a" and self.links:
            href = self.links.pop()
            label = " ".join("".join(self.link_text.pop()).split())
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
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"

"""ThreatQ description (HTML) → the Markdown content of a MISP event report. Pure, no Airflow.

MISP renders event reports with markdown-it in the analyst's browser, so what we send must not
be able to carry markup of its own: every piece of text is escaped (``<``, ``>`` and ``&`` as
entities, Markdown punctuation with a backslash), links survive only with an ``http``, ``https``
or ``mailto`` target, images and scripts are dropped, and code keeps its text inside fences long
enough that the text cannot close them. The structure ThreatQ's editor produces (paragraphs,
line breaks, headings, lists, links, bold/italic, code, tables) becomes its Markdown spelling.

``html_to_markdown`` is the entry point; ``truncate`` caps the size without cutting an escape.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import quote, urlsplit

_SKIP = frozenset({"script", "style", "head", "title", "template", "noscript", "iframe", "object", "embed",
                   "svg", "math", "select", "textarea", "button"})
_BLOCK = frozenset({"p", "div", "section", "article", "header", "footer", "main", "aside", "nav", "blockquote",
                    "table", "thead", "tbody", "tfoot", "tr", "dl", "dt", "dd", "figure", "figcaption", "address",
                    "center", "form", "fieldset"})
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_EMPHASIS = {"strong": "**", "b": "**", "em": "*", "i": "*"}
_LINK_SCHEMES = frozenset({"http", "https", "mailto"})
# Markdown punctuation that could open emphasis, code or a link; '\\' first so it is not doubled again.
_MD_ESCAPES = (("\\", "\\\\"), ("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("`", "\\`"), ("*", "\\*"),
               ("_", "\\_"), ("[", "\\["), ("]", "\\]"))
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_TAG_LIKE = re.compile(r"<\s*/?\s*[a-zA-Z!]")


def escape_text(text: str) -> str:
    """Plain text → Markdown that shows exactly this text and can open no markup.

    :param text: any text (already free of HTML entities).
    :return: the escaped text.
    """
    for raw, escaped in _MD_ESCAPES:
        text = text.replace(raw, escaped)
    return text


def safe_link(href: str | None) -> str | None:
    """A link target we may write into ``[text](target)``, or None (``javascript:``, relative, …).

    :param href: the ``href`` attribute.
    :return: the percent-encoded URL, or None when it is not an absolute http(s)/mailto URL.
    """
    if not href:
        return None
    href = _CONTROL.sub("", href).strip()
    try:
        scheme = urlsplit(href).scheme.lower()
    except ValueError:
        return None
    if scheme not in _LINK_SCHEMES:
        return None
    # Parentheses, spaces, quotes, angle brackets and backslashes would end or bend the link.
    return quote(href, safe=":/?#[]@!$&*+,;=%-._~")


def _fence(text: str, char: str = "`", minimum: int = 1) -> str:
    """A run of ``char`` longer than any run inside ``text``."""
    longest = max((len(m) for m in re.findall(re.escape(char) + "+", text)), default=0)
    return char * max(minimum, longest + 1)


class _Converter(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0
        self.pre = 0
        self.code = 0
        self.spans: list[tuple[str, int, str | None]] = []  # (tag, start index in out, link target)
        self.lists: list[list[int | str]] = []  # per open list: ["ul"|"ol", next number]
        self.cells = 0
        self.in_cell = 0
        self.fresh_item = False  # a list marker was just written: a block inside the item must not break it

    # -------------------------------------------------------------- output helpers
    def _tail(self) -> str:
        tail = ""
        for piece in reversed(self.out):
            tail = piece + tail
            if len(tail) >= 2:
                break
        return tail

    def newlines(self, n: int) -> None:
        if not self.out or self.in_cell or self.fresh_item:
            return
        if self.lists:
            n = 1  # a blank line inside an item would end the list in most renderers
        tail = self._tail()
        have = len(tail) - len(tail.rstrip("\n"))
        if have < n:
            self.out.append("\n" * (n - have))

    # -------------------------------------------------------------- parser callbacks
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skip += 1
            return
        if self.skip:
            return
        if tag == "br":
            self.out.append("\n" if self.pre else "\\\n")  # CommonMark hard line break
        elif tag == "hr":
            self.newlines(2)
            self.out.append("---")
            self.newlines(2)
        elif tag in _HEADINGS:
            self.newlines(2)
            self.out.append("#" * _HEADINGS[tag] + " ")
        elif tag in ("ul", "ol"):
            self.fresh_item = False
            self.newlines(2 if not self.lists else 1)
            self.lists.append([tag, 1])
        elif tag == "li":
            self.fresh_item = False
            self.newlines(1)
            indent = "   " * max(0, len(self.lists) - 1)
            if self.lists and self.lists[-1][0] == "ol":
                number = int(self.lists[-1][1])
                self.lists[-1][1] = number + 1
                self.out.append(f"{indent}{number}. ")
            else:
                self.out.append(f"{indent}- ")
            self.fresh_item = True
        elif tag == "pre":
            self.newlines(2)
            self.pre += 1
            self.spans.append(("pre", len(self.out), None))
        elif tag == "code" and not self.pre:
            self.code += 1
            self.spans.append(("code", len(self.out), None))
        elif tag in ("td", "th"):
            if self.cells:
                self.out.append(" | ")
            self.cells += 1
            self.in_cell += 1
        elif tag == "tr":
            self.in_cell = 0
            self.newlines(2)
            self.cells = 0
        elif tag in _EMPHASIS and not (self.pre or self.code):
            self.spans.append((tag, len(self.out), None))
        elif tag == "a" and not (self.pre or self.code):
            self.spans.append(("a", len(self.out), safe_link(dict(attrs).get("href"))))
        elif tag == "img":
            alt = (dict(attrs).get("alt") or "").strip()
            if alt:  # never the src: a remote image in a report is a tracking pixel
                self.out.append(escape_text(f"[image: {alt}]") if not (self.pre or self.code) else f"[image: {alt}]")
        elif tag in _BLOCK:
            self.newlines(2)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in ("br", "hr", "img"):
            self.handle_endtag(tag)

    def _close_span(self, tag: str) -> tuple[str, str | None] | None:
        for k in range(len(self.spans) - 1, -1, -1):
            if self.spans[k][0] == tag:
                _, start, target = self.spans.pop(k)
                del self.spans[k:]  # unclosed inner spans end here too
                inner = "".join(self.out[start:])
                del self.out[start:]
                return inner, target
        return None

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skip = max(0, self.skip - 1)
            return
        if self.skip:
            return
        if tag in ("td", "th"):
            self.in_cell = max(0, self.in_cell - 1)
        elif tag in _HEADINGS or tag in _BLOCK:
            self.newlines(2)
        elif tag in ("ul", "ol"):
            if self.lists:
                self.lists.pop()
            self.newlines(2 if not self.lists else 1)
        elif tag == "pre" and self.pre:
            self.pre -= 1
            closed = self._close_span("pre")
            if closed is not None:
                body = closed[0].strip("\n")
                fence = _fence(body, "`", 3)
                self.out.append(f"{fence}\n{body}\n{fence}")
            self.newlines(2)
        elif tag == "code" and self.code:
            self.code -= 1
            closed = self._close_span("code")
            if closed is not None and closed[0].strip():
                body = closed[0]
                fence = _fence(body)
                pad = " " if body.startswith("`") or body.endswith("`") else ""
                self.out.append(f"{fence}{pad}{body}{pad}{fence}")
        elif tag in _EMPHASIS and not (self.pre or self.code):
            closed = self._close_span(tag)
            if closed is not None:
                inner = closed[0].strip()
                if inner:
                    lead = " " if closed[0][:1].isspace() else ""
                    trail = " " if closed[0][-1:].isspace() else ""
                    self.out.append(f"{lead}{_EMPHASIS[tag]}{inner}{_EMPHASIS[tag]}{trail}")
        elif tag == "a" and not (self.pre or self.code):
            closed = self._close_span("a")
            if closed is not None:
                inner, target = closed
                text = inner.strip() or (escape_text(target) if target else "")
                self.out.append(f"[{text}]({target})" if target else text)

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        data = _CONTROL.sub("", data)
        if self.pre or self.code:
            self.out.append(data if self.pre else " ".join(data.split()) if data.strip() else data)
            return
        text = re.sub(r"\s+", " ", data)
        if text == " " or not text:
            tail = self._tail()
            if self.out and tail and not tail[-1].isspace():
                self.out.append(" ")
            return
        tail = self._tail()
        if (not self.out or tail.endswith("\n") or tail.endswith(" ")) and text.startswith(" "):
            text = text.lstrip(" ")
        if text:
            self.fresh_item = False
            self.out.append(escape_text(text))

    def result(self) -> str:
        # Close what the HTML left open (ThreatQ stores fragments), then tidy blank lines.
        while self.spans:
            before = len(self.spans)
            self.handle_endtag(self.spans[-1][0])
            if len(self.spans) == before:  # a span its end tag cannot close here: keep its text as is
                self.spans.pop()
        text = "".join(self.out)
        text = "\n".join(line.rstrip(" ") for line in text.split("\n"))
        return re.sub(r"\n{3,}", "\n\n", text).strip()


def html_to_markdown(html: str | None) -> str:
    """ThreatQ's HTML description → Markdown text that renders it and can inject nothing.

    A description without any tag is taken as plain text: its lines are kept as lines.

    :param html: the description (HTML fragment, plain text, or None).
    :return: Markdown; empty when the description holds no visible text.
    """
    if not html or not str(html).strip():
        return ""
    html = str(html)
    if not _TAG_LIKE.search(html):
        lines = [escape_text(" ".join(_CONTROL.sub("", line).split())) for line in html.splitlines()]
        while lines and not lines[0]:
            lines.pop(0)
        while lines and not lines[-1]:
            lines.pop()
        paragraphs = "\n".join(lines).split("\n\n")  # blank lines separate paragraphs
        return "\n\n".join("\\\n".join(p for p in para.split("\n") if p) for para in paragraphs if para.strip())
    converter = _Converter()
    converter.feed(html)
    converter.close()
    return converter.result()


def truncate(markdown: str, max_chars: int, note: str) -> str:
    """Cap ``markdown`` at about ``max_chars`` characters, never inside an escape, then add ``note``.

    :param markdown: converted text.
    :param max_chars: the limit (the note comes on top).
    :param note: Markdown appended after a cut (already escaped), e.g. where the full text is.
    :return: ``markdown`` unchanged when short enough, else its head and the note.
    """
    if len(markdown) <= max_chars:
        return markdown
    head = markdown[:max_chars]
    space = max(head.rfind(" "), head.rfind("\n"))
    if space > 0 and space > max_chars - 200:  # prefer a word boundary when one is near
        head = head[:space]
    head = re.sub(r"&[#a-zA-Z0-9]*$", "", head)  # a cut entity (&am…) would show as text
    if (len(head) - len(head.rstrip("\\"))) % 2:
        head = head[:-1]  # a lone trailing backslash would escape the newline
    return f"{head.rstrip()}\n\n{note}"

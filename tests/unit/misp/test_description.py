"""ThreatQ description HTML → event report Markdown: structure kept, nothing injectable."""

from __future__ import annotations

import re

import pytest

from threatq_provider.misp.description import escape_text, html_to_markdown, safe_link, truncate


@pytest.mark.parametrize(("html", "markdown"), [
    ("<p>test</p>", "test"),
    ("<p>Seen by <b>APT28</b> and <em>others</em>.<br>Second line</p><p>Next</p>",
     "Seen by **APT28** and *others*.\\\nSecond line\n\nNext"),
    ("<h2>Summary</h2><p>text</p>", "## Summary\n\ntext"),
    ("<ul><li>one</li><li><p>two</p></li><li>three<ul><li>nested</li></ul></li></ul><ol><li>a</li><li>b</li></ol>",
     "- one\n- two\n- three\n   - nested\n\n1. a\n2. b"),
    ('<p>See <a href="https://example.com/a (b)">the report</a></p>', "See [the report](https://example.com/a%20%28b%29)"),
    ('<a href="mailto:soc@example.com"></a>', "[mailto:soc@example.com](mailto:soc@example.com)"),
    ("<table><tr><th>IOC</th><th>Type</th></tr><tr><td><p>203.0.113.5</p></td><td>IP</td></tr></table>",
     "IOC | Type\n\n203.0.113.5 | IP"),
    ("<div>a &amp; b &gt; c</div>", "a &amp; b &gt; c"),
    ("<p>evil_domain[.]com *x*</p>", "evil\\_domain\\[.\\]com \\*x\\*"),
    ("<p>   </p>", ""),
    ("", ""),
    (None, ""),
    ("first line\nsecond line\n\nnew paragraph", "first line\\\nsecond line\n\nnew paragraph"),
    ("<b>unclosed <i>nested", "**unclosed *nested***"),
])
def test_threatq_html_becomes_markdown(html, markdown):
    assert html_to_markdown(html) == markdown


@pytest.mark.parametrize("html", [
    "<script>alert(1)</script><p>ok</p>",
    "<p>ok</p><style>p{color:red}</style>",
    "<p>ok</p><iframe src='https://evil.example'>x</iframe>",
    "<p onclick='alert(1)'>ok</p>",
])
def test_scripts_styles_frames_and_event_handlers_are_dropped(html):
    assert html_to_markdown(html) == "ok"


@pytest.mark.parametrize("html", [
    "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>",
    "<p>&lt;img src=x onerror=alert(1)&gt;</p>",
    "plain <script>alert(1)</script> text",
    "<p>&lt;https://evil.example&gt;</p>",
])
def test_text_that_looks_like_html_stays_text(html):
    out = html_to_markdown(html)
    # no raw '<' reaches the report: a renderer with HTML enabled would otherwise run it
    assert "<" not in out and ">" not in out


@pytest.mark.parametrize("href", ["javascript:alert(1)", "JaVaScRiPt:alert(1)", " javascript:alert(1)",
                                  "java\nscript:alert(1)", "data:text/html;base64,PHNjcmlwdD4=",
                                  "vbscript:msgbox", "/relative/path", "file:///etc/passwd"])
def test_only_http_https_and_mailto_links_survive(href):
    out = html_to_markdown(f'<a href="{href}">click</a>')
    assert out == "click"
    assert safe_link(href) is None


def test_link_text_cannot_forge_a_second_link():
    out = html_to_markdown('<a href="https://ok.example">x](javascript:alert(1)) [y</a>')
    assert out == "[x\\](javascript:alert(1)) \\[y](https://ok.example)"
    assert re.findall(r"\]\(([^)]*)\)", out.replace("\\]", "")) == ["https://ok.example"]


def test_images_keep_their_alt_text_but_never_their_source():
    out = html_to_markdown('<img src="https://tracker.example/p.gif" alt="kill chain"><p>x</p>')
    assert "tracker" not in out and "kill chain" in out and "![" not in out


def test_code_keeps_its_text_inside_fences_it_cannot_close():
    out = html_to_markdown("<pre>line1\n  <b>x</b> ``` y</pre><p>inline <code>a`b</code></p>")
    assert out == "````\nline1\n  x ``` y\n````\n\ninline ``a`b``"


def test_control_characters_are_removed():
    assert html_to_markdown("<p>a\x00b\x1bc</p>") == "abc"


def test_escape_text_escapes_backslash_first():
    assert escape_text("\\*") == "\\\\\\*"


def test_truncate_leaves_short_text_alone_and_cuts_long_text_with_the_note():
    assert truncate("short", 10, "NOTE") == "short"
    out = truncate("word " * 100, 52, "NOTE")
    assert out.endswith("\n\nNOTE") and len(out) <= 52 + len("\n\nNOTE")


@pytest.mark.parametrize(("text", "limit", "head"), [
    ("x" * 30 + "&amp;", 33, "x" * 30),          # a cut entity would show as '&am'
    ("x" * 30 + "\\\\", 31, "x" * 30),           # a lone backslash would escape the newline
    ("x" * 30 + "\\\\", 32, "x" * 30 + "\\\\"),  # a whole escaped backslash stays
])
def test_truncate_never_cuts_inside_an_escape(text, limit, head):
    assert truncate(text + "y" * 10, limit, "N") == f"{head}\n\nN"

"""The poll stages records a strict UTF-8 writer cannot hold, and says which (issue #18, item 2).

An indicator whose text holds a lone UTF-16 surrogate (``"x \\ud83d y"``, valid JSON) used to make
``json.dumps(..., ensure_ascii=False)`` + the UTF-8 stage file raise ``UnicodeEncodeError``: the
poll failed at the same page on every run and, in collection mode, the cursor never moved.
"""

from __future__ import annotations

import json

from threatq_provider.operators.poll import ndjson_line

from .test_poll_and_report import END, START, _op, fake_client, variables  # noqa: F401 - fixtures

POISONED = {"id": 17, "value": "evil.example.com", "description": "cut emoji \ud83d", "type": {"name": "FQDN"}}


def test_a_record_with_a_lone_surrogate_is_staged_escaped_and_reads_back_the_same():
    line, escaped = ndjson_line(POISONED)
    assert escaped
    line.decode("ascii")  # pure ASCII: the surrogate travels as the escape ThreatQ sent
    assert b"\\ud83d" in line and line.endswith(b"\n")
    assert json.loads(line) == POISONED


def test_a_clean_record_stays_utf8_and_unescaped():
    line, escaped = ndjson_line({"id": 1, "value": "bücher.example", "description": "😀 ok"})
    assert not escaped
    assert line == '{"id":1,"value":"bücher.example","description":"😀 ok"}\n'.encode()


def test_a_poisoned_page_is_staged_whole_and_the_record_is_named(tmp_path, fake_client, capsys):
    fake_client.pages = [[{"id": 16, "value": "a.example"}, POISONED, {"id": 18, "value": "ü.example"}],
                         [{"id": 19, "value": "c.example"}]]
    out = _op(tmp_path, window_start=START, window_end=END).execute({})
    raw = (tmp_path / "run" / "raw.ndjson").read_bytes()
    raw.decode("utf-8")  # the stage file is valid UTF-8
    assert [json.loads(line)["id"] for line in raw.splitlines()] == [16, 17, 18, 19], "nothing else on the page lost"
    assert out["indicators"] == 4
    assert (out["lone_surrogates"], out["lone_surrogate_ids"]) == (1, [17])
    assert "Indicator 17 holds a lone UTF-16 surrogate" in capsys.readouterr().out  # the task log


def test_collection_mode_reports_the_cursor_past_a_poisoned_page(tmp_path, fake_client, variables):
    fake_client.collection_pages = [([{"id": 1, "value": "x"}], "CUR1"), ([POISONED], "CUR2"),
                                    ([{"id": 20, "value": "y"}], "CUR3")]
    out = _op(tmp_path, mode="collection", collection="abc").execute({})
    assert out["indicators"] == 3 and out["next_cursor"] == "CUR3"
    assert out["lone_surrogate_ids"] == [17]

"""The poll stages records a strict UTF-8 writer cannot hold, and says which (issue #18, item 2).

An indicator whose text holds a lone UTF-16 surrogate (``"x \\ud83d y"``, valid JSON) used to make
``json.dumps(..., ensure_ascii=False)`` + the UTF-8 stage file raise ``UnicodeEncodeError``: the
poll failed at the same page on every run and, in collection mode, the cursor never moved.
"""

from __future__ import annotations

import json

from threatq_provider.operators.poll import ndjson_line
from threatq_provider.stage_io import read_text

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
    raw = read_text(tmp_path / "run" / "raw.ndjson.zst").encode("utf-8")
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


# -- records nested too deeply (issue #18, item 7) -------------------------------------------------

def _unparsed(ident: int, depth: int = 3_000):
    from threatq_provider.threatq.paging import UnparsedRow

    text = f'{{"id": {ident}, "updated_at": "2026-01-01 00:00:00", "v": ' + "[" * depth + "1" + "]" * depth + "}"
    return UnparsedRow({"id": ident, "updated_at": "2026-01-01 00:00:00"}, text)


def _deep_dict(ident: int, depth: int) -> dict:
    value: object = "x"
    for _ in range(depth):
        value = [value]
    return {"id": ident, "value": "deep.example", "attributes": [{"name": "n", "value": value}]}


def test_records_too_deep_go_to_the_poll_rejects_with_id_and_reason_and_the_rest_is_staged(tmp_path, fake_client):
    fake_client.pages = [[{"id": 1, "value": "a"}, _unparsed(2), _deep_dict(3, 600), _deep_dict(4, 100)],
                         [{"id": 5, "value": "b"}]]
    out = _op(tmp_path, window_start=START, window_end=END).execute({})
    staged = [json.loads(line)["id"] for line in read_text(tmp_path / "run" / "raw.ndjson.zst").splitlines()]
    assert staged == [1, 4, 5] and out["indicators"] == 3
    assert out["rejected"] == {"too_deeply_nested": 2}
    assert out["rejects_path"] == f"file://{tmp_path}/run/raw.rejects.ndjson.zst"
    rejects = [json.loads(line) for line in read_text(tmp_path / "run" / "raw.rejects.ndjson.zst").splitlines()]
    assert [(r["id"], r["reason"]) for r in rejects] == [(2, "too_deeply_nested"), (3, "too_deeply_nested")]
    assert "indicator 2: nested more than 512 levels deep" in rejects[0]["message"]
    assert rejects[0]["raw"] == _unparsed(2).text and rejects[0]["updated_at"] == "2026-01-01 00:00:00"
    assert json.loads(rejects[1]["raw"])["id"] == 3


def test_a_rerun_without_bad_records_leaves_an_empty_rejects_file(tmp_path, fake_client):
    fake_client.pages = [[_unparsed(2)]]
    _op(tmp_path, window_start=START, window_end=END).execute({})
    fake_client.pages = [[{"id": 1, "value": "a"}]]
    out = _op(tmp_path, window_start=START, window_end=END).execute({})
    assert out["rejected"] == {} and read_text(tmp_path / "run" / "raw.rejects.ndjson.zst") == ""


def test_a_type_filter_does_not_hide_an_unparsed_collection_row(tmp_path, fake_client, variables):
    fake_client.collection_pages = [([{"id": 1, "value": "x", "type": {"name": "FQDN"}}, _unparsed(2)], "CUR1")]
    out = _op(tmp_path, mode="collection", collection="abc", types="IP Address").execute({})
    assert out["indicators"] == 0 and out["rejected"] == {"too_deeply_nested": 1}
    assert out["next_cursor"] == "CUR1"

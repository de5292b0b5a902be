"""EcsTransformOperator: parse-time duration check, streaming paths, counts XCom, determinism."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException
from threatq_provider.ecs.errors import EcsConfigError
from threatq_provider.operators.transform import EcsTransformOperator, default_rejects_path

END = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _line(i: int, **fields: Any) -> str:
    raw = {"id": i, "value": f"10.0.0.{i}", "type": {"id": 15, "name": "IP Address"}, "score": 5,
           "status": {"id": 1, "name": "Active"}, "hash": f"{i:032x}"}
    raw.update(fields)
    return json.dumps(raw)


@pytest.fixture
def stage(tmp_path: Path) -> Path:
    lines = [_line(1), _line(2), "{oops", json.dumps({"id": 3, "type": {"name": "MD5"}}), _line(4, updated_at="2026-11-20 00:00:00")]
    (tmp_path / "raw.ndjson").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp_path


def test_bad_literal_duration_fails_when_the_dag_is_parsed() -> None:
    with pytest.raises(EcsConfigError, match="'90x'"):
        EcsTransformOperator(task_id="t", source_path="file:///a", target_path="file:///b", ioc_expiration_duration="90x")


def test_templated_duration_is_not_checked_at_parse_time_but_at_run_time(stage: Path) -> None:
    op = EcsTransformOperator(task_id="t", source_path=f"file://{stage}/raw.ndjson", target_path=f"file://{stage}/ecs.ndjson",
                              ioc_expiration_duration="{{ params.ioc_expiration_duration }}")
    op.ioc_expiration_duration = "0d"  # what the template rendered to
    with pytest.raises(AirflowFailException, match="'0d'"):
        op.execute({"data_interval_end": END})
    assert not (stage / "ecs.ndjson").exists()


def test_execute_streams_source_to_target_and_rejects(stage: Path) -> None:
    op = EcsTransformOperator(task_id="t", source_path=f"file://{stage}/raw.ndjson", target_path=f"file://{stage}/out/ecs.ndjson",
                              ioc_expiration_duration="5d", threatq_url="https://tq.example.com")
    result = op.execute({"data_interval_end": END})
    assert result["read"] == 5 and result["written"] == 3 and result["flagged"] == 2
    assert result["rejected"] == {"invalid_json": 1, "missing_value": 1}
    assert result["rejects_path"].endswith("out/ecs.rejects.ndjson")
    assert result["path"].endswith("out/ecs.ndjson")
    json.dumps(result)  # the XCom is JSON-able
    docs = [json.loads(line) for line in (stage / "out" / "ecs.ndjson").read_text().splitlines()]
    assert [d["threatq"]["id"] for d in docs] == [1, 2, 4]
    # Lines without updated_at take the run's data_interval_end as clock: deterministic reruns.
    assert docs[0]["@timestamp"] == "2026-11-25T12:00:00.000Z"
    assert docs[0]["threatq"]["ioc_expired_at"] == "2026-11-30T12:00:00.000Z"
    assert docs[2]["threatq"]["ioc_expired_at"] == "2026-11-25T00:00:00.000Z"
    assert docs[0]["threat"]["indicator"]["reference"] == "https://tq.example.com/indicators/1/details"
    rejects = [json.loads(line) for line in (stage / "out" / "ecs.rejects.ndjson").read_text().splitlines()]
    assert [r["reason"] for r in rejects] == ["invalid_json", "missing_value"]


def test_rerun_writes_identical_output(stage: Path) -> None:
    kwargs = {"task_id": "t", "source_path": f"file://{stage}/raw.ndjson", "target_path": f"file://{stage}/ecs.ndjson"}
    EcsTransformOperator(**kwargs).execute({"data_interval_end": END})
    first = (stage / "ecs.ndjson").read_bytes()
    EcsTransformOperator(**kwargs).execute({"data_interval_end": END})
    assert (stage / "ecs.ndjson").read_bytes() == first


def test_explicit_now_and_preserve_original_event_strings(stage: Path) -> None:
    op = EcsTransformOperator(task_id="t", source_path=f"file://{stage}/raw.ndjson", target_path=f"file://{stage}/ecs.ndjson",
                              rejects_path=f"file://{stage}/bad.ndjson", preserve_original_event="True", now="2026-01-01T00:00:00Z")
    result = op.execute({})
    assert result["now"] == "2026-01-01T00:00:00+00:00"
    doc = json.loads((stage / "ecs.ndjson").read_text().splitlines()[0])
    assert doc["@timestamp"] == "2026-01-01T00:00:00.000Z"
    assert doc["event"]["original"] == _line(1)
    assert (stage / "bad.ndjson").exists()


def test_template_fields_are_the_constructor_arguments() -> None:
    assert set(EcsTransformOperator.template_fields) == {
        "source_path", "target_path", "rejects_path", "ioc_expiration_duration", "preserve_original_event", "threatq_url",
        "active_statuses", "now", "instance"}


def test_the_instance_renders_into_threatq_instance() -> None:
    op = EcsTransformOperator(task_id="t", source_path="file:///a", target_path="file:///b", instance="partner")
    assert op._options().instance == "partner"
    unset = EcsTransformOperator(task_id="t", source_path="file:///a", target_path="file:///b", instance="None")
    assert unset._options().instance is None  # a template that rendered None (an older poll's XCom)


def test_active_statuses_render_from_a_list_a_variable_string_or_unset() -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    def options(value):
        return EcsTransformOperator(task_id="t", source_path="file:///a", target_path="file:///b",
                                    active_statuses=value)._options()

    assert options(None).active_statuses == ("Active",)
    assert options("").active_statuses == ("Active",)
    assert options(["Active", "Review"]).active_statuses == ("Active", "Review")
    assert options("Active, Indirect").active_statuses == ("Active", "Indirect")
    with pytest.raises(AirflowFailException, match="Whitelisted can never"):
        options("Active,Whitelisted")


def test_default_rejects_path() -> None:
    assert default_rejects_path("s3://b/run/ecs.ndjson") == "s3://b/run/ecs.rejects.ndjson"
    assert default_rejects_path("file:///x/out") == "file:///x/out.rejects.ndjson"


def test_invalid_engine_fails_when_the_dag_is_parsed() -> None:
    with pytest.raises(EcsConfigError, match="invalid transform engine 'turbo'"):
        EcsTransformOperator(task_id="t", source_path="file:///a", target_path="file:///b", engine="turbo")


def test_engines_write_the_same_file_and_say_which_ran(stage: Path) -> None:
    from threatq_provider.ecs import native
    from threatq_simulators.corpus import Corpus

    corpus = [json.dumps(r) for r in Corpus(5, indicators=300).iter_indicators()]
    (stage / "corpus.ndjson").write_text("\n".join(corpus) + "\n{oops\n", encoding="utf-8")
    results, outputs = {}, {}
    engines = ["python", "native"] if native.available() else ["python"]
    for engine in engines:
        op = EcsTransformOperator(task_id="t", source_path=f"file://{stage}/corpus.ndjson",
                                  target_path=f"file://{stage}/{engine}/ecs.ndjson", engine=engine)
        results[engine] = op.execute({"data_interval_end": END})
        outputs[engine] = (stage / engine / "ecs.ndjson").read_bytes()
    assert results["python"]["engine"] == "python" and results["python"]["native_lines"] == 0
    assert results["python"]["written"] == 300 and results["python"]["rejected"] == {"invalid_json": 1}
    if "native" in results:
        assert outputs["native"] == outputs["python"]
        assert results["native"]["engine"] == "native" and results["native"]["native_lines"] == 300
        assert results["native"]["rejected"] == {"invalid_json": 1}


def test_native_engine_required_but_missing_fails_without_retry(stage: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from threatq_provider.ecs import native

    monkeypatch.setattr(native, "_module", lambda: None)
    op = EcsTransformOperator(task_id="t", source_path=f"file://{stage}/raw.ndjson", target_path=f"file://{stage}/ecs.ndjson",
                              engine="native")
    with pytest.raises(AirflowFailException, match="threatq_ecs_native"):
        op.execute({"data_interval_end": END})


@pytest.mark.parametrize("engine", ["python", "native"])
def test_compressed_stage_files_hold_the_same_bytes_as_plain_ones(stage: Path, engine: str) -> None:
    """Issue 17: a zstd raw file (the poll's) transforms into a zstd ECS file and rejects file whose
    text is byte for byte what the plain files hold; a plain raw file of an earlier release reads too."""
    from threatq_provider.ecs.native import available
    from threatq_provider.stage_io import compression_of, open_writer, read_text

    if engine == "native" and not available():
        pytest.skip("threatq_ecs_native is not built here (scripts/bootstrap builds it)")
    with open_writer(stage / "raw.ndjson.zst") as out:
        out.write((stage / "raw.ndjson").read_bytes())
    results = {}
    for name in ("raw.ndjson", "raw.ndjson.zst"):
        out_dir = stage / name.replace(".", "_")
        EcsTransformOperator(task_id="t", source_path=f"file://{stage}/{name}", engine=engine,
                             target_path=f"file://{out_dir}/ecs.ndjson.zst").execute({"data_interval_end": END})
        assert compression_of((out_dir / "ecs.ndjson.zst").read_bytes()[:4]) == "zstd"
        results[name] = (read_text(out_dir / "ecs.ndjson.zst"), read_text(out_dir / "ecs.rejects.ndjson.zst"))
    EcsTransformOperator(task_id="t", source_path=f"file://{stage}/raw.ndjson", engine=engine,
                         target_path=f"file://{stage}/plain/ecs.ndjson").execute({"data_interval_end": END})
    plain = ((stage / "plain" / "ecs.ndjson").read_text(), (stage / "plain" / "ecs.rejects.ndjson").read_text())
    assert results["raw.ndjson"] == results["raw.ndjson.zst"] == plain
    assert plain[0].count("\n") == 3 and plain[1].count("\n") == 2

"""ShareOptions: defaults, normalisation of template strings, errors that list the choices."""

from __future__ import annotations

import pytest

from threatq_provider.misp.errors import MispConfigError
from threatq_provider.misp.options import DISTRIBUTIONS, ShareOptions


def test_defaults_follow_threatq_misp_operation_except_distribution():
    options = ShareOptions()
    assert (options.publish, options.analysis_id, options.threat_level_id) == (True, 2, 2)
    assert (options.send_attachments, options.chunk_size) == (True, 1000)


def test_default_ip_type_is_the_misp_operations_source_ip():
    # Decided (#11 item 5): was ip-dst; ThreatQ's MISP Operation documents "Source IP".
    assert ShareOptions().default_ip_type == "ip-src"
    assert ShareOptions(default_ip_type="Destination").default_ip_type == "ip-dst"


def test_distribution_defaults_to_organisation_only_not_the_operations_connected_communities():
    # Kept on purpose (#11 item 5): an unattended hourly share must not widen the audience by default.
    assert (ShareOptions().distribution, ShareOptions().distribution_id) == ("your_organisation_only", 0)


@pytest.mark.parametrize(("field", "value"), [("publish", ""), ("publish", "None"), ("send_description", None),
                                              ("chunk_size", ""), ("chunk_size", "None")])
def test_an_unset_option_takes_its_default(field, value):
    # Decided drift (#11): "" used to mean false for the flags, and "None" was an error; unset = the default.
    assert getattr(ShareOptions(**{field: value}), field) == getattr(ShareOptions(), field)


@pytest.mark.parametrize(("value", "expected"), [("y", True), ("n", False), ("OFF", False)])
def test_flags_use_the_providers_one_set_of_words(value, expected):
    assert ShareOptions(publish=value).publish is expected


@pytest.mark.parametrize(("given", "canonical"), [
    ("Your organization only", "your_organisation_only"),
    ("This Community Only", "this_community_only"),
    ("connected_communities", "connected_communities"),
    ("All communities", "all_communities"),
])
def test_distribution_accepts_threatq_labels(given, canonical):
    assert ShareOptions(distribution=given).distribution == canonical


def test_template_strings_become_typed_values():
    options = ShareOptions(publish="false", to_ids="True", chunk_size="250", default_analysis="Complete",
                           default_threat_level="High", default_ip_type="Source")
    assert (options.publish, options.to_ids, options.chunk_size) == (False, True, 250)
    assert (options.analysis_id, options.threat_level_id, options.default_ip_type) == (2, 1, "ip-src")


@pytest.mark.parametrize(("field", "value", "listed"), [
    ("distribution", "everyone", ", ".join(DISTRIBUTIONS)),
    ("default_analysis", "done", "initial, ongoing, completed"),
    ("default_threat_level", "severe", "high, medium, low, undefined"),
    ("default_ip_type", "ip", "ip-dst, ip-src"),
])
def test_a_bad_choice_names_the_field_and_lists_the_valid_choices(field, value, listed):
    with pytest.raises(MispConfigError) as info:
        ShareOptions(**{field: value})
    assert field in str(info.value) and listed in str(info.value)


def test_sharing_group_distribution_needs_a_group_name():
    with pytest.raises(MispConfigError, match="sharing_group"):
        ShareOptions(distribution="sharing_group", sharing_group="  ")
    assert ShareOptions(distribution="sharing_group", sharing_group="Partners").distribution_id == 4


@pytest.mark.parametrize("value", [0, "-3", "many", "2.5", 2.5])
def test_chunk_size_must_be_a_positive_integer(value):
    with pytest.raises(MispConfigError, match="chunk_size"):
        ShareOptions(chunk_size=value)


def test_booleans_reject_words_that_are_not_booleans():
    with pytest.raises(MispConfigError, match="publish"):
        ShareOptions(publish="sometimes")

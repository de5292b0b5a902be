"""Name validation against threatq_provider/data/threatq/enumerations.json."""

from __future__ import annotations

import pytest

from threatq_provider.threatq import enums
from threatq_provider.threatq.errors import ThreatQValidationError


@pytest.mark.parametrize("given, canonical", [
    ("Email Attachment", "Email Attachment"),
    ("Eamil Attachment", "Email Attachment"),
    ("ip address", "IP Address"),
    ("  SHA-256 ", "SHA-256"),
])
def test_indicator_type_canonical_names(given, canonical):
    assert enums.validate_indicator_type(given) == canonical


def test_bad_indicator_type_lists_valid_values():
    with pytest.raises(ThreatQValidationError) as err:
        enums.validate_indicator_type("Domain")
    assert "FQDN" in str(err.value) and "Email Attachment" in err.value.valid


@pytest.mark.parametrize("name", ["Active", "Expired", "Indirect", "Review", "Whitelisted"])
def test_the_five_statuses_are_valid(name):
    assert enums.validate_status(name.lower()) == name


def test_bad_status_lists_the_five():
    with pytest.raises(ThreatQValidationError) as err:
        enums.validate_status("Inactive")
    assert err.value.valid == ["Active", "Expired", "Indirect", "Review", "Whitelisted"]


def test_event_types():
    assert enums.validate_event_type("command and control") == "Command and Control"
    with pytest.raises(ThreatQValidationError, match="Spearphish"):
        enums.validate_event_type("Phishing")


def test_every_type_of_the_insightconnect_plugin_enum_maps_to_a_threatq_type():
    # Every value of the InsightConnect plugin's Create Indicator enum is accepted.
    plugin = ["CIDR Block", "Email Address", "Eamil Attachment", "Email Subject", "File Path", "Filename",
              "FQDN", "Fuzzy Hash", "GOST Hash", "IP Address", "MD5", "Mutex", "Password", "Registry Key",
              "SHA-1", "SHA-256", "SHA-384", "SHA-512", "String", "URL", "URL Path", "User-agent", "Username",
              "X-Mailer"]
    canonical = {name: enums.validate_indicator_type(name) for name in plugin}
    # Each is its own canonical name, except the plugin's typo, which is read as the real type.
    assert {given: got for given, got in canonical.items() if given != got} == {"Eamil Attachment": "Email Attachment"}


def test_non_string_rejected():
    with pytest.raises(ThreatQValidationError):
        enums.validate_status(None)  # type: ignore[arg-type]

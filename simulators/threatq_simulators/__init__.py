"""The ThreatQ simulator and the MISP double (the ``threatq-simulators`` distribution)."""

"""``misp-double``: run the MISP double from a shell (for the demo and for users' own DAGs).

Example::

    misp-double --port 8481 --api-key my-test-key --faults faults.json

``faults.json`` is a fault plan in the schema both simulators share (threatq_simulators.faults),
e.g. ``[{"method": "POST", "path_regex": "^/events/restSearch", "status": 429, "times": 2}]``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from threatq_simulators.misp_double import (
    DEFAULT_API_KEY,
    DEFAULT_SHARING_GROUPS,
    MISP_VERSION,
    MispDouble,
)
from threatq_simulators.faults import MISP, FaultPlan


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (``--help`` shows every default)."""
    parser = argparse.ArgumentParser(
        prog="misp-double",
        description="A stateful MISP API double for PyMISP clients (events, attributes, tags, galaxies, "
        "sharing groups, attachments, fault injection).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind")
    parser.add_argument("--port", type=int, default=8481, help="TCP port (0 = any free port)")
    parser.add_argument("--api-key", default=DEFAULT_API_KEY,
                        help="the API key clients must send in the Authorization header")
    parser.add_argument("--faults", default=None,
                        help="fault plan: JSON file path or inline JSON list of rules (the schema threatq-sim "
                        "uses: method, path_regex, nth, times, status, headers, body, delay_s, action)")
    parser.add_argument("--sharing-group", action="append", default=None, dest="sharing_groups",
                        help=f"sharing group name offered to the user (repeatable; default: "
                        f"{', '.join(DEFAULT_SHARING_GROUPS)})")
    parser.add_argument("--misp-version", default=MISP_VERSION, help="version reported by servers/getVersion")
    parser.add_argument("--log-level", default="INFO", help="Python logging level")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Start the double and serve until SIGINT/SIGTERM. :return: exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    try:
        faults = (FaultPlan.from_json(args.faults) if args.faults else FaultPlan()).bind(MISP)
    except (OSError, ValueError) as exc:  # a missing file, bad JSON, a bad or ThreatQ-only rule
        parser.error(f"--faults: {exc}")
    double = MispDouble(args.host, args.port, args.api_key, faults=faults,
                        sharing_groups=tuple(args.sharing_groups or DEFAULT_SHARING_GROUPS),
                        version=args.misp_version)
    url = double.start()
    # The key is the user's own test key; print where it came from, not its value.
    print(f"misp-double listening on {url} (API key from --api-key; {len(faults)} fault rule(s))", flush=True)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    double.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``threatq-sim``: run the ThreatQ API simulator from the shell until SIGINT/SIGTERM.

Example::

    threatq-sim --port 8480 --indicators 100000 --faults plan.json
    threatq-sim --start now-7d --end now      # data dated up to start-up (docker-compose.yaml)

It prints the base URL, the credentials for both grants (a password or client secret given on the
command line is named, not shown) and the data-collection hashes.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

from threatq_simulators.corpus import Corpus
from threatq_simulators.faults import THREATQ, FaultPlan
from threatq_simulators.threatq_sim import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    ThreatQSimulator,
)

__all__ = ["build_parser", "corpus_bounds", "main"]

_RELATIVE = re.compile(r"now(?:-(\d+)([dhm]))?")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def _when(text: str, now: datetime) -> datetime | str:
    match = _RELATIVE.fullmatch(text.strip().lower())
    if match is None:
        return text  # an absolute date or datetime: the corpus reads it
    amount, unit = match.groups()
    return now - timedelta(**{_UNITS[unit]: int(amount)}) if amount else now


def corpus_bounds(start: str, end: str, *, now: datetime) -> tuple[datetime | str, datetime | str]:
    """``--start``/``--end`` as the corpus takes them: ``now`` and ``now-<n>d|h|m`` become datetimes
    relative to ``now`` (start-up), anything else is passed on unchanged.
    """
    return _when(start, now), _when(end, now)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (``--help`` shows every default, credentials included)."""
    p = argparse.ArgumentParser(
        prog="threatq-sim",
        description="Local ThreatQ REST API simulator (seeded corpus, OAuth tokens, cursor feeds, fault injection).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="interface to bind")
    p.add_argument("--port", type=int, default=8480, help="TCP port (0 = any free port)")
    p.add_argument("--indicators", type=int, default=2000, help="number of generated indicators")
    p.add_argument("--events", type=int, default=100, help="number of generated events")
    p.add_argument("--investigations", type=int, default=5, help="number of investigations")
    p.add_argument("--seed", type=int, default=42, help="corpus seed (same seed, same data)")
    p.add_argument("--start", default="2026-01-01",
                   help="earliest updated_at (UTC date or datetime, or now-<n>d|h|m: relative to start-up)")
    p.add_argument("--end", default="2026-01-08", help="updated_at upper bound, exclusive (same forms, or now)")
    p.add_argument("--mode", choices=("v6", "legacy"), default="v6",
                   help="v6: attributes/sources only when asked via with=/fields=; legacy: always")
    p.add_argument("--faults", default=None, help="fault plan: JSON file path or inline JSON list of rules")
    p.add_argument("--token-ttl", type=int, default=3600, help="access token lifetime (expires_in), seconds")
    p.add_argument("--id-offset", type=int, default=0,
                   help="shift every type/status/event-type id (an 'old instance' whose ids differ)")
    p.add_argument("--max-limit", type=int, default=10000, help="largest accepted page size (limit)")
    p.add_argument("--client-id", default=DEFAULT_CLIENT_ID, help="OAuth client id")
    p.add_argument("--username", default=DEFAULT_USERNAME, help="user e-mail for the password grant")
    p.add_argument("--password", default=DEFAULT_PASSWORD, help="user password for the password grant")
    p.add_argument("--client-secret", default=DEFAULT_CLIENT_SECRET, help="client secret for the client_credentials grant")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, start the simulator, print how to use it, wait for a signal.

    :param argv: arguments (default: ``sys.argv[1:]``).
    :return: process exit code.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    start, end = corpus_bounds(args.start, args.end, now=datetime.now(timezone.utc).replace(microsecond=0))
    corpus = Corpus(seed=args.seed, indicators=args.indicators, events=args.events, start=start,
                    end=end, investigations=args.investigations, id_offset=args.id_offset)
    try:
        faults = (FaultPlan.from_json(args.faults) if args.faults else FaultPlan()).bind(THREATQ)
    except (OSError, ValueError) as exc:  # a missing file, bad JSON, a bad or foreign rule
        parser.error(f"--faults: {exc}")
    sim = ThreatQSimulator(corpus, host=args.host, port=args.port, client_id=args.client_id,
                           username=args.username, password=args.password, client_secret=args.client_secret,
                           token_ttl_s=args.token_ttl, mode=args.mode, faults=faults, max_limit=args.max_limit)
    url = sim.start()
    stop = threading.Event()

    def _on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    print(f"ThreatQ simulator on {url}  (mode {args.mode}, {args.indicators} indicators, {args.events} events, "
          f"seed {args.seed})")
    # The built-in credentials are public (see --help) and shown; a password or secret the user
    # chose is not echoed into a log file (scripts/demo redirects this output to one).
    password = args.password if args.password == DEFAULT_PASSWORD else "<from --password>"
    secret = args.client_secret if args.client_secret == DEFAULT_CLIENT_SECRET else "<from --client-secret>"
    print(f"  password grant:           client_id={args.client_id} email={args.username} password={password}")
    print(f"  client_credentials grant: client_id={args.client_id} client_secret={secret}")
    print(f"  token URL:                {url}/api/token")
    for coll in corpus.collections:
        print(f"  data collection {coll['name']!r}: {url}/api/indicators/query/hash/{coll['hash']}")
    print("  control: POST/DELETE /_sim/faults, POST /_sim/expire-tokens, GET /_sim/stats")
    print(json.dumps({"url": url, "client_id": args.client_id, "username": args.username}), flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

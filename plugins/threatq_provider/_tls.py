"""Whether an error was caused by a TLS certificate that failed verification.

Shared by the ThreatQ client (which then stops retrying: the same certificate comes back every
time) and the operators' fail-fast rule. Standard library only: DAG parsing imports the operators.
"""

from __future__ import annotations

import ssl
from typing import Any


def certificate_failed(exc: BaseException) -> bool:
    """Whether an ``ssl.SSLCertVerificationError`` sits anywhere in the error's chain.

    Libraries wrap it several times (PyMISP, requests and urllib3 in ``args`` and ``reason``,
    elastic_transport in ``errors``) and our hooks re-raise ``from None``, which still keeps
    ``__context__``.

    :param exc: the error.
    :return: True when certificate verification failed (untrusted, expired, wrong host).
    """
    stack: list[Any] = [exc]
    seen: set[int] = set()
    while stack:
        err = stack.pop()
        if not isinstance(err, BaseException) or id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, ssl.SSLCertVerificationError):
            return True
        stack.extend((*err.args, getattr(err, "reason", None), *(getattr(err, "errors", None) or ()),
                      err.__cause__, err.__context__))
    return False

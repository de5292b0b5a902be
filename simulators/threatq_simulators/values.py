"""Realistic, valid indicator values for every default ThreatQ indicator type.

One generator per type name, each ``gen(rng, uid, seed_data) -> str``. ``uid`` is a unique
integer (the indicator id); the network-ish generators fold it into the value through a
bijection so values stay unique per type for up to 16 million indicators.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["VALUE_GENERATORS", "generate_value"]

# First octets of routable, non-reserved IPv4 space (no 0/8, 10/8, 100.64/10, 127/8, 169.254/16,
# 172.16/12, 192.168/16, 198.18/15, multicast or documentation ranges: the ECS side may treat
# private addresses specially, and public-looking data is what feeds carry).
_PUBLIC_FIRST_OCTETS = (
    5, 23, 31, 37, 45, 46, 62, 77, 78, 80, 82, 85, 89, 91, 93, 94, 95, 103, 104, 107, 109, 128, 134,
    139, 141, 144, 146, 151, 154, 157, 159, 162, 167, 176, 178, 185, 188, 190, 193, 194, 195, 196, 212, 213, 217,
)
_IPV6_PREFIXES = ("2a03:2880", "2606:4700", "2400:cb00", "2a01:4f8", "2604:a880", "2a02:c207", "2001:41d0", "2a0e:97c0")
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"

Gen = Callable[[random.Random, int, Mapping[str, Any]], str]


def _mix24(uid: int) -> int:
    """Bijection on 24 bits: unique low three octets per uid, scattered."""
    return (uid * 0x9E3779 + 0x5BD1E9) & 0xFFFFFF


def _b36(n: int, width: int = 0) -> str:
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = _B36[r] + out
    return out.rjust(width, "0") or "0"


def _token(uid: int) -> str:
    # short, unique, not sequential-looking
    return _b36((uid * 2654435761) % 2176782336, 6)


def _hexdigest(algo: str, rng: random.Random, uid: int) -> str:
    return hashlib.new(algo, f"{uid}:{rng.random()}".encode()).hexdigest()


def _ipv4(rng: random.Random, uid: int, s: Mapping[str, Any]) -> str:
    low = _mix24(uid)
    last = low & 255
    if last in (0, 255):  # avoid network/broadcast-looking hosts
        last = 1 if last == 0 else 254
    return f"{rng.choice(_PUBLIC_FIRST_OCTETS)}.{low >> 16}.{(low >> 8) & 255}.{last}"


def _ipv6(rng: random.Random, uid: int, s: Mapping[str, Any]) -> str:
    low = _mix24(uid)
    return f"{rng.choice(_IPV6_PREFIXES)}:{rng.randrange(1, 0xFFFF):x}::{low >> 12:x}:{low & 0xFFF:x}"


def _cidr(rng: random.Random, uid: int, s: Mapping[str, Any]) -> str:
    low = _mix24(uid)
    prefix = rng.choice((16, 20, 22, 24, 24, 24, 28))
    addr = (rng.choice(_PUBLIC_FIRST_OCTETS) << 24) | low
    mask = (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
    net = addr & mask
    return f"{net >> 24}.{(net >> 16) & 255}.{(net >> 8) & 255}.{net & 255}/{prefix}"


def _fqdn(rng: random.Random, uid: int, s: Mapping[str, Any]) -> str:
    words = s["words"]
    base = f"{rng.choice(words)}-{rng.choice(words)}-{_token(uid)}.{rng.choice(s['tlds'])}"
    if rng.random() < 0.35:
        base = f"{rng.choice(('www', 'mail', 'cdn', 'login', 'api', 'secure'))}.{base}"
    return base


def _url(rng: random.Random, uid: int, s: Mapping[str, Any]) -> str:
    host = _fqdn(rng, uid, s) if rng.random() < 0.8 else _ipv4(rng, uid, s)
    scheme = rng.choice(("http", "https", "https"))
    port = f":{rng.choice((8080, 8443, 4443, 81, 8000))}" if rng.random() < 0.15 else ""
    path = rng.choice(s["url_paths"]).replace("{w}", rng.choice(s["words"]), 1).replace("{w}", rng.choice(s["file_stems"]))
    query = f"?id={rng.randrange(1000, 99999)}&ref={rng.choice(s['words'])}" if rng.random() < 0.25 else ""
    return f"{scheme}://{host}{port}{path}{query}"


def _url_path(rng: random.Random, uid: int, s: Mapping[str, Any]) -> str:
    path = rng.choice(s["url_paths"]).replace("{w}", rng.choice(s["words"]), 1).replace("{w}", _token(uid))
    return path


def _email(rng: random.Random, uid: int, s: Mapping[str, Any]) -> str:
    local = f"{rng.choice(s['first_names'])}.{rng.choice(s['last_names'])}{uid % 997}"
    domain = rng.choice(s["mail_domains"]) if rng.random() < 0.6 else _fqdn(rng, uid, s).split(".", 1)[-1]
    if domain.count(".") == 0:
        domain = rng.choice(s["mail_domains"])
    return f"{local}@{domain}"


def _email_subject(rng: random.Random, uid: int, s: Mapping[str, Any]) -> str:
    return f"{rng.choice(s['email_subjects'])} #{rng.randrange(10000, 99999)}-{_token(uid)[:3]}"


def _filename(rng: random.Random, uid: int, s: Mapping[str, Any]) -> str:
    return f"{rng.choice(s['file_stems'])}_{_token(uid)}.{rng.choice(s['file_exts'])}"


def _email_attachment(rng: random.Random, uid: int, s: Mapping[str, Any]) -> str:
    stem = rng.choice(("Invoice", "Remittance", "PO", "Scan", "Statement", "Contract"))
    ext = rng.choice(("docm", "xlsm", "pdf", "zip", "iso", "html", "one"))
    return f"{stem}_{rng.randrange(2024, 2027)}_{_token(uid)}.{ext}"


def _file_path(rng: random.Random, uid: int, s: Mapping[str, Any]) -> str:
    name = _filename(rng, uid, s)
    if rng.random() < 0.75:
        folder = rng.choice(
            (
                "C:\\Users\\Public\\",
                "C:\\ProgramData\\Microsoft\\",
                "C:\\Windows\\Temp\\",
                "C:\\Users\\%USERNAME%\\AppData\\Roaming\\",
                "C:\\Windows\\System32\\Tasks\\",
            )
        )
        return folder + name
    return rng.choice(("/tmp/.", "/var/tmp/", "/dev/shm/.", "/usr/local/bin/")) + name.rsplit(".", 1)[0]


def _file_mapping(rng: random.Random, uid: int, s: Mapping[str, Any]) -> str:
    return f"\\Device\\HarddiskVolume2\\Windows\\Temp\\{_filename(rng, uid, s)}"


def _fuzzy(rng: random.Random, uid: int, s: Mapping[str, Any]) -> str:
    block = rng.choice((48, 96, 192, 384, 768, 1536, 3072, 6144, 12288, 24576))
    a = "".join(rng.choice(_B64) for _ in range(rng.randrange(40, 64)))
    b = "".join(rng.choice(_B64) for _ in range(rng.randrange(20, 32)))
    return f"{block}:{a}:{b}"


def _mac(rng: random.Random, uid: int, s: Mapping[str, Any]) -> str:
    low = _mix24(uid)
    oui = rng.choice(("00:50:56", "00:0c:29", "08:00:27", "3c:52:82", "f4:8e:38", "00:1a:4b"))
    return f"{oui}:{low >> 16:02x}:{(low >> 8) & 255:02x}:{low & 255:02x}"


def _mutex(rng: random.Random, uid: int, s: Mapping[str, Any]) -> str:
    return f"{rng.choice(s['mutex_stems'])}_{_token(uid)}"


def _password(rng: random.Random, uid: int, s: Mapping[str, Any]) -> str:
    return f"{rng.choice(s['words']).capitalize()}{rng.randrange(10, 9999)}!{_token(uid)[:4]}"


def _registry(rng: random.Random, uid: int, s: Mapping[str, Any]) -> str:
    return f"{rng.choice(s['registry_roots'])}\\{rng.choice(s['service_names'])}{_token(uid)[:4]}"


def _service(rng: random.Random, uid: int, s: Mapping[str, Any]) -> str:
    return f"{rng.choice(s['service_names'])}{_token(uid)[:4]}"


def _string(rng: random.Random, uid: int, s: Mapping[str, Any]) -> str:
    return f"{rng.choice(s['words'])} {rng.choice(s['words'])} {rng.choice(s['file_stems'])} {_token(uid)}"


def _binary_string(rng: random.Random, uid: int, s: Mapping[str, Any]) -> str:
    return "4D5A90000300000004000000FFFF0000" + hashlib.md5(f"bin{uid}{rng.random()}".encode()).hexdigest().upper()


def _x509_serial(rng: random.Random, uid: int, s: Mapping[str, Any]) -> str:
    raw = hashlib.sha1(f"x509{uid}{rng.random()}".encode()).hexdigest()[:32]
    return ":".join(raw[i : i + 2] for i in range(0, 32, 2))


def _x509_subject(rng: random.Random, uid: int, s: Mapping[str, Any]) -> str:
    cn = _fqdn(rng, uid, s)
    return f"CN={cn}, O={rng.choice(s['x509_orgs'])}, L=Amsterdam, C={rng.choice(('US', 'NL', 'GB', 'RU', 'DE'))}"


def _user_agent(rng: random.Random, uid: int, s: Mapping[str, Any]) -> str:
    ua = rng.choice(s["user_agents"]).replace("{v}", str(rng.randrange(60, 131)))
    return f"{ua} {_token(uid)}" if "{" not in ua and rng.random() < 0.5 else ua


def _username(rng: random.Random, uid: int, s: Mapping[str, Any]) -> str:
    return f"{rng.choice(s['first_names'])}{rng.choice(('_', '.', ''))}{rng.choice(s['last_names'])}{uid % 9973}"


def _x_mailer(rng: random.Random, uid: int, s: Mapping[str, Any]) -> str:
    return rng.choice(s["x_mailers"]).replace("{v}", str(rng.randrange(1, 30)))


def _asn(rng: random.Random, uid: int, s: Mapping[str, Any]) -> str:
    return f"AS{rng.choice((13335, 16509, 15169, 8075, 14061, 24940, 16276, 9009, 20473, 197695, 49505, 44477, 60068))}" if rng.random() < 0.3 else f"AS{1000 + (_mix24(uid) % 398000)}"


def _cve(rng: random.Random, uid: int, s: Mapping[str, Any]) -> str:
    return f"CVE-{rng.randrange(2014, 2027)}-{rng.randrange(1000, 52000)}"


VALUE_GENERATORS: dict[str, Gen] = {
    "ASN": _asn,
    "Binary String": _binary_string,
    "CIDR Block": _cidr,
    "CVE": _cve,
    "Email Address": _email,
    "Email Attachment": _email_attachment,
    "Email Subject": _email_subject,
    "File Mapping": _file_mapping,
    "File Path": _file_path,
    "Filename": _filename,
    "FQDN": _fqdn,
    "Fuzzy Hash": _fuzzy,
    "GOST Hash": lambda rng, uid, s: _hexdigest("sha256", rng, uid),
    "Hash ION": lambda rng, uid, s: _hexdigest("md5", rng, uid),
    "IP Address": _ipv4,
    "IPv6 Address": _ipv6,
    "MAC Address": _mac,
    "MD5": lambda rng, uid, s: _hexdigest("md5", rng, uid),
    "Mutex": _mutex,
    "Password": _password,
    "Registry Key": _registry,
    "Service Name": _service,
    "SHA-1": lambda rng, uid, s: _hexdigest("sha1", rng, uid),
    "SHA-256": lambda rng, uid, s: _hexdigest("sha256", rng, uid),
    "SHA-384": lambda rng, uid, s: _hexdigest("sha384", rng, uid),
    "SHA-512": lambda rng, uid, s: _hexdigest("sha512", rng, uid),
    "String": _string,
    "x509 Serial": _x509_serial,
    "x509 Subject": _x509_subject,
    "URL": _url,
    "URL Path": _url_path,
    "User-agent": _user_agent,
    "Username": _username,
    "X-Mailer": _x_mailer,
}


def generate_value(type_name: str, rng: random.Random, uid: int, seed_data: Mapping[str, Any]) -> str:
    """Generate one valid value of ``type_name``; unknown (custom) types get a generic string.

    :param type_name: the ThreatQ indicator type name.
    :param rng: the per-indicator random generator.
    :param uid: a unique integer (the indicator id).
    :param seed_data: the vocabulary loaded from ``simulators/data/threatq_seed.json``.
    :return: the value.
    """
    gen = VALUE_GENERATORS.get(type_name, _string)
    return gen(rng, uid, seed_data)

"""Watchlists: identities, digests and key fingerprints matched over stored entries.

Matching runs over the Arrow columns of entries (as the store hands them
out), not a Python loop per entry: one bulk JSON parse pulls every verifier
(certificate or public key) and digest field out of the bodies
(:mod:`rekorkit.monitor.bodyfields`: every signer of a DSSE envelope, not
only the last), the verifier column is dictionary-encoded by its exact
bytes, and only its *distinct* values are parsed (X.509, with an LRU) and
compared with the watch items. The digests are matched with one ``is_in``.

Identities follow Fulcio's certificate profile: the subject is the SAN
(email or URI), the OIDC issuer is the extension 1.3.6.1.4.1.57264.1.8
(or the older 1.3.6.1.4.1.57264.1.1); see
github.com/sigstore/fulcio/blob/main/docs/oid-info.md. rekor-monitor's
``monitoredValues`` configuration is read as is (:func:`load_monitored_values`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cachetools
import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from rekorkit.errors import MalformedError
from rekorkit.monitor.bodyfields import body_fields
from rekorkit.monitor.watchindex import scan_watch_index
from rekorkit.store import normalize_digest
from rekorkit.store.duckdb import DuckDBStore

if TYPE_CHECKING:
    from rekorkit.store.postgres import PostgresStore

__all__ = [
    "OID_ISSUER",
    "OID_ISSUER_V1",
    "IdentityWatch",
    "OIDWatch",
    "Verifier",
    "WatchMatch",
    "Watchlist",
    "load_monitored_values",
]

OID_ISSUER_V1 = "1.3.6.1.4.1.57264.1.1"
"""Fulcio's original OIDC issuer extension (raw bytes)."""
OID_ISSUER = "1.3.6.1.4.1.57264.1.8"
"""Fulcio's OIDC issuer extension (DER UTF8String)."""


@dataclass(frozen=True, slots=True)
class Verifier:
    """What a watchlist can see of one entry's verifier.

    Attributes:
        fingerprint: hex SHA-256 of the DER certificate, or of the public key's SPKI.
        subjects: the certificate's SAN values (emails, URIs, DNS names) and subject CN.
        issuer: the Fulcio OIDC issuer extension, if present.
        extensions: other extension values by dotted OID (UTF-8 text where decodable).
    """

    fingerprint: str
    subjects: tuple[str, ...] = ()
    issuer: str | None = None
    extensions: Mapping[str, str] = field(default_factory=dict)


def _der_text(value: bytes) -> str:
    """Fulcio's newer extensions hold a DER UTF8String; the older ones the raw text."""
    if len(value) >= 2 and value[0] == 0x0C and value[1] < 0x80 and len(value) == value[1] + 2:
        value = value[2:]
    return value.decode("utf-8", "replace")


def parse_verifier(blob: bytes) -> Verifier | None:
    """Parse a base64 verifier field (PEM or DER certificate, or a PEM public key).

    Returns ``None`` for a value that is none of these (it cannot match identities).
    """
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        return None
    try:
        if raw.startswith(b"-----BEGIN CERTIFICATE"):
            cert = x509.load_pem_x509_certificate(raw)
        elif raw.startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(raw)
            spki = key.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            return Verifier(hashlib.sha256(spki).hexdigest())
        elif raw[:1] == b"\x30":
            try:
                cert = x509.load_der_x509_certificate(raw)
            except ValueError:
                serialization.load_der_public_key(raw)
                return Verifier(hashlib.sha256(raw).hexdigest())
        else:
            return None
    except (ValueError, TypeError):
        return None
    der = cert.public_bytes(serialization.Encoding.DER)
    subjects: list[str] = []
    issuer: str | None = None
    extensions: dict[str, str] = {}
    for ext in cert.extensions:
        oid = ext.oid.dotted_string
        if isinstance(ext.value, x509.SubjectAlternativeName):
            for name in ext.value:
                subjects.append(str(name.value))
        elif isinstance(ext.value, x509.UnrecognizedExtension):
            text = _der_text(ext.value.value)
            extensions[oid] = text
            if oid == OID_ISSUER or (oid == OID_ISSUER_V1 and issuer is None):
                issuer = text
    for attr in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME):
        subjects.append(str(attr.value))
    return Verifier(hashlib.sha256(der).hexdigest(), tuple(subjects), issuer, extensions)


@dataclass(frozen=True, slots=True)
class IdentityWatch:
    """A certificate identity: a SAN (exact or regex) and optionally its OIDC issuers.

    Attributes:
        subject: the SAN (email, URI), or a regex matched in full when ``regex``.
        issuers: accepted OIDC issuers (any when empty), exact or regex like ``subject``.
        regex: treat ``subject`` and ``issuers`` as regular expressions.
        name: the watch's name in alerts (default: derived from the values).
    """

    subject: str
    issuers: tuple[str, ...] = ()
    regex: bool = False
    name: str = ""

    @property
    def watch_id(self) -> str:
        """The name used in alert keys."""
        return self.name or f"identity:{self.subject}|{','.join(self.issuers)}"

    def matches(self, v: Verifier) -> str | None:
        """The matching SAN of ``v``, if ``v`` is this identity."""
        if self.issuers and (
            v.issuer is None or not any(_same(p, v.issuer, self.regex) for p in self.issuers)
        ):
            return None
        return next((s for s in v.subjects if _same(self.subject, s, self.regex)), None)


@dataclass(frozen=True, slots=True)
class OIDWatch:
    """An X.509 extension value (rekor-monitor's ``oidMatchers``)."""

    oid: str
    values: tuple[str, ...]
    name: str = ""

    @property
    def watch_id(self) -> str:
        """The name used in alert keys."""
        return self.name or f"oid:{self.oid}={','.join(self.values)}"

    def matches(self, v: Verifier) -> str | None:
        """The matching extension value of ``v``, if any."""
        got = v.extensions.get(self.oid)
        return got if got is not None and got in self.values else None


def _same(pattern: str, value: str, regex: bool) -> bool:
    return _compiled(pattern).fullmatch(value) is not None if regex else pattern == value


_PATTERNS: cachetools.LRUCache[str, re.Pattern[str]] = cachetools.LRUCache(maxsize=1024)


def _compiled(pattern: str) -> re.Pattern[str]:
    found = _PATTERNS.get(pattern)
    if found is None:
        try:
            found = _PATTERNS[pattern] = re.compile(pattern)
        except re.error as exc:
            raise MalformedError(f"bad regex {pattern!r}: {exc}", what="watchlist") from exc
    return found


@dataclass(frozen=True, slots=True)
class WatchMatch:
    """One stored entry that matches one watch item.

    Attributes:
        watch: the watch item's id.
        origin: the entry's origin.
        log_index: its index.
        leaf_hash: its leaf hash (the UUID, as bytes).
        value: what matched (the SAN, digest or fingerprint).
        fingerprint: the verifier's fingerprint (``None`` when it did not parse).
    """

    watch: str
    origin: str
    log_index: int
    leaf_hash: bytes
    value: str
    fingerprint: str | None


def _b64(hexd: str) -> str:
    return base64.b64encode(bytes.fromhex(hexd)).decode()


class Watchlist:
    """Identities, digests, key fingerprints and extension values to watch for.

    Args:
        identities: certificate identities.
        digests: artifact or DSSE payload digests (hex, or ``sha256:<hex>``).
        fingerprints: hex SHA-256 of a certificate (DER) or public key (SPKI DER).
        oids: X.509 extension values.
        cache_size: distinct verifiers kept parsed.
    """

    def __init__(
        self,
        identities: Iterable[IdentityWatch] = (),
        digests: Iterable[str] = (),
        fingerprints: Iterable[str] = (),
        oids: Iterable[OIDWatch] = (),
        *,
        cache_size: int = 65536,
    ) -> None:
        self.identities = tuple(identities)
        self.digests = frozenset(normalize_digest(d) for d in digests)
        self.fingerprints = frozenset(f.strip().lower().replace(":", "") for f in fingerprints)
        self.oids = tuple(oids)
        for w in self.identities:
            if w.regex:
                for p in (w.subject, *w.issuers):
                    _compiled(p)
        self._parsed: cachetools.LRUCache[bytes, Verifier | None] = cachetools.LRUCache(
            maxsize=cache_size
        )
        # Rekor v2 bodies carry base64 digests; v1 bodies hex.
        forms = {f for d in self.digests for f in (d, d.upper(), _b64(d))}
        self._digest_forms = pa.array(sorted(forms), pa.string()).cast(pa.binary())

    def __bool__(self) -> bool:
        return bool(self.identities or self.digests or self.fingerprints or self.oids)

    def _verifier(self, blob: bytes) -> Verifier | None:
        if blob in self._parsed:
            return self._parsed[blob]
        v = self._parsed[blob] = parse_verifier(blob)
        return v

    def verifier_hits(self, v: Verifier) -> list[tuple[str, str]]:
        """``(watch id, matched value)`` for every watch item that ``v`` matches."""
        found: list[tuple[str, str]] = []
        if v.fingerprint in self.fingerprints:
            found.append((f"fingerprint:{v.fingerprint}", v.fingerprint))
        watches: list[IdentityWatch | OIDWatch] = [*self.identities, *self.oids]
        for w in watches:
            hit = w.matches(v)
            if hit is not None:
                found.append((w.watch_id, hit))
        return found

    def verdicts(self, blobs: Iterable[bytes]) -> list[Verifier | None]:
        """Each verifier field parsed (``None``: not a certificate or key), through the LRU."""
        return [self._verifier(b) for b in blobs]

    def digest_forms(self) -> pa.Array:
        """The watched digests as bodies spell them: hex (either case) and base64."""
        return self._digest_forms.cast(pa.string())

    def digest_hex(self, text: str) -> str:
        """The watched digest (lower-case hex) that a body's digest field ``text`` spells."""
        low = text.lower()  # hex in any case; base64 as is
        return low if low in self.digests else base64.b64decode(text).hex()

    def scan_store(
        self, store: DuckDBStore | PostgresStore, origin: str, start: int, end: int
    ) -> list[WatchMatch]:
        """The matches among the stored entries ``[start, end)`` of ``origin``.

        Over the watch index (:mod:`rekorkit.monitor.watchindex`) of a DuckDB
        or a PostgreSQL store: the fields of entries not indexed yet are read
        once, then matching is a join; the same matches as :meth:`match` over
        those entries.

        Raises:
            TypeError: ``store`` is neither a DuckDB nor a PostgreSQL store.
            StoreError: the database failed.
        """
        return [
            WatchMatch(watch, origin, index, leaf, value, fp)
            for index, watch, leaf, value, fp in scan_watch_index(self, store, origin, start, end)
        ]

    def match(self, table: pa.Table | pa.RecordBatch) -> list[WatchMatch]:
        """The matches among ``table``'s entries (the store's entry schema).

        Every body's verifier and digest fields come from one bulk parse
        (:func:`~rekorkit.monitor.bodyfields.body_fields`); each distinct
        verifier (exact bytes) is parsed and compared once; digests are
        matched with one ``is_in``.
        """
        if not self or table.num_rows == 0:
            return []
        fields = body_fields(table.column("body"))
        origins = table.column("origin")
        indices = np.asarray(table.column("log_index"))
        leaves = table.column("leaf_hash")
        encoded = pc.dictionary_encode(fields.verifiers)
        codes = np.asarray(encoded.indices, np.int64)
        verdicts = self.verdicts(encoded.dictionary.to_pylist())
        prints = [v.fingerprint if v else None for v in verdicts]
        signers: dict[int, list[str]] = {}
        found: dict[tuple[int, str], tuple[str, str | None]] = {}
        if self.identities or self.fingerprints or self.oids:
            hits = {k: m for k, v in enumerate(verdicts) if v and (m := self.verifier_hits(v))}
            for j in np.flatnonzero(
                np.isin(codes, np.fromiter(hits, np.int64, len(hits)))
            ).tolist():
                code, row = int(codes[j]), int(fields.verifier_rows[j])
                for watch, value in hits[code]:
                    found.setdefault((row, watch), (value, prints[code]))
        if self.digests:
            hit = pc.fill_null(pc.is_in(fields.digests, value_set=self._digest_forms), False)
            wanted = np.flatnonzero(np.asarray(hit))
            rows = fields.digest_rows[wanted]
            near = np.flatnonzero(np.isin(fields.verifier_rows, rows))
            for j, code in zip(
                fields.verifier_rows[near].tolist(), codes[near].tolist(), strict=True
            ):
                if prints[code]:
                    signers.setdefault(j, []).append(prints[code])
            for j in wanted.tolist():
                hexd = self.digest_hex(fields.digests[j].as_py().decode())
                row = int(fields.digest_rows[j])
                fp = min(signers.get(row, []), default=None)  # evidence: one signer
                found.setdefault((row, f"digest:{hexd}"), (hexd, fp))
        out = [
            WatchMatch(watch, origins[row].as_py(), int(indices[row]), leaves[row].as_py(), v, fp)
            for (row, watch), (v, fp) in found.items()
        ]
        out.sort(key=lambda m: (m.origin, m.log_index, m.watch))
        return out

    def to_json(self) -> dict[str, Any]:
        """The watchlist as configuration (for reports)."""
        return {
            "identities": [
                {"subject": w.subject, "issuers": list(w.issuers), "regex": w.regex}
                for w in self.identities
            ],
            "digests": sorted(self.digests),
            "fingerprints": sorted(self.fingerprints),
            "oids": [{"oid": w.oid, "values": list(w.values)} for w in self.oids],
        }


def _oid_text(value: object, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence) and all(isinstance(p, int) for p in value):
        return ".".join(str(p) for p in value)
    raise MalformedError(f"{where}: an OID is a dotted string or a list of integers")


def monitored_values(doc: Mapping[str, Any]) -> Watchlist:
    """A watchlist from rekor-monitor's ``monitoredValues`` mapping.

    ``certIdentities`` (``certSubject`` regex, optional ``issuers`` regexes),
    ``subjects`` (regexes over the SAN), ``fingerprints`` and ``oidMatchers``
    (``objectIdentifier`` or ``extension``, with ``extensionValues``); see
    github.com/sigstore/rekor-monitor's README.
    """
    values = doc.get("monitoredValues", doc)
    if not isinstance(values, Mapping):
        raise MalformedError("monitoredValues must be a mapping", what="monitoredValues")
    identities: list[IdentityWatch] = []
    for i, item in enumerate(values.get("certIdentities") or []):
        if not isinstance(item, Mapping) or not isinstance(item.get("certSubject"), str):
            raise MalformedError(
                "needs a certSubject string", what="monitoredValues", where=f"certIdentities[{i}]"
            )
        issuers = tuple(str(x) for x in item.get("issuers") or [])
        identities.append(IdentityWatch(item["certSubject"], issuers, regex=True))
    for s in values.get("subjects") or []:
        identities.append(IdentityWatch(str(s), regex=True))
    oids: list[OIDWatch] = []
    for i, item in enumerate(values.get("oidMatchers") or []):
        where = f"oidMatchers[{i}]"
        if not isinstance(item, Mapping):
            raise MalformedError("must be a mapping", what="monitoredValues", where=where)
        oid = _oid_text(item.get("objectIdentifier") or item.get("extension"), where)
        vals = tuple(str(x) for x in item.get("extensionValues") or [])
        oids.append(OIDWatch(oid, vals))
    fingerprints = [str(f) for f in values.get("fingerprints") or []]
    return Watchlist(identities, (), fingerprints, oids)


def load_monitored_values(path: str | Path) -> Watchlist:
    """Read a rekor-monitor configuration file (YAML) into a :class:`Watchlist`.

    Raises:
        MalformedError: the file is not YAML or not that configuration.
    """
    import yaml  # type: ignore[import-untyped]

    try:
        doc = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise MalformedError(f"{path}: {exc}", what="monitoredValues") from exc
    if not isinstance(doc, Mapping):
        raise MalformedError(f"{path}: not a mapping", what="monitoredValues")
    return monitored_values(doc)

"""Signed entry requests for the queue tests: DSSE (v1) and hashedrekord (v2)."""

from __future__ import annotations

import hashlib
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from rekorkit.entries import dsse_v001_request, hashedrekord_v002_request
from rekorkit.entries.dsse import Envelope, sign_envelope
from rekorkit.queue import QueueBackend
from rekorkit.testing import LocalRekor

KEY = ec.generate_private_key(ec.SECP256R1())
PAYLOAD_TYPE = "application/vnd.in-toto+json"


def envelope(n: int, key: ec.EllipticCurvePrivateKey = KEY) -> Envelope:
    """A DSSE envelope over a distinct payload, signed by ``key``."""
    payload = b'{"_type":"https://in-toto.io/Statement/v1","n":%d}' % n
    return sign_envelope(PAYLOAD_TYPE, payload, key)


def dsse(n: int) -> dict[str, Any]:
    """A Rekor v1 dsse 0.0.1 ProposedEntry for envelope ``n``."""
    return dsse_v001_request(envelope(n), [KEY.public_key()])


def hashedrekord_v2(n: int) -> dict[str, Any]:
    """A Rekor v2 hashedrekord request over artifact ``n``."""
    digest = hashlib.sha256(b"artifact %d" % n).digest()
    sig = KEY.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    return hashedrekord_v002_request(digest, sig, KEY.public_key())


def v1_backend(srv: LocalRekor) -> QueueBackend:
    """The local log's v1 API, with its keys."""
    return QueueBackend(srv.url, 1, public_key=srv.public_key_pem, vkey=srv.v1_vkey)


def v2_backend(srv: LocalRekor) -> QueueBackend:
    """The local log's v2 API, with its checkpoint keys."""
    return QueueBackend(
        srv.url, 2, public_key=srv.checkpoint_public_key_pem, vkey=srv.checkpoint_vkey
    )

"""In-memory Rekor v1 / v2 logs behind httpx.MockTransport, for protocol edge cases.

The real local log server covers normal operation and faults; these fakes
exist to produce what a server cannot (tampered bodies, bad proofs, foreign
keys, wrong content types). They sign with real keys through rekorkit's own
note/entry code, so a client that accepts their output accepts real data.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
from collections.abc import Callable
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from rekorkit import merkle
from rekorkit.checkpoint import Checkpoint, sign_checkpoint
from rekorkit.entries import set_payload, sign_set
from rekorkit.entries.canonical import (
    canonicalize_v1,
    canonicalize_v2,
    hashedrekord_v001_request,
    hashedrekord_v002_request,
)
from rekorkit.note import ECDSASigner, Ed25519Signer
from rekorkit.trust import LogInstance, log_from_key


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def spki(key: Any) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


_ARTIFACT_KEY = ec.generate_private_key(ec.SECP256R1())


_SIGS: dict[int, bytes] = {}


def artifact_signature(n: int) -> tuple[bytes, bytes]:
    """(digest, signature) for artifact ``n``; the same bytes every time (ECDSA is randomised)."""
    digest = hashlib.sha256(b"artifact %d" % n).digest()
    if n not in _SIGS:
        _SIGS[n] = _ARTIFACT_KEY.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    return digest, _SIGS[n]


def artifact_key() -> ec.EllipticCurvePrivateKey:
    return _ARTIFACT_KEY


def proposed_hashedrekord(n: int) -> dict[str, Any]:
    """A valid hashedrekord 0.0.1 ProposedEntry for artifact number ``n``."""
    digest, sig = artifact_signature(n)
    return hashedrekord_v001_request(sig, _ARTIFACT_KEY.public_key(), digest)


class FakeV1Log:
    """A Rekor v1 log: entries, checkpoints, proofs, SETs, search, 409s."""

    def __init__(self, host: str = "rekor.test", tree_id: int = 4242) -> None:
        self.host = host
        self.tree_id = tree_id
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.signer = ECDSASigner.from_private_key(host, self.key)
        self.log_id = hashlib.sha256(spki(self.key.public_key())).digest()
        self.bodies: list[bytes] = []
        self.times: list[int] = []
        self.requests: list[httpx.Request] = []
        # Hooks that tests use to lie: (index, entry dict) -> entry dict
        self.tamper: Callable[[int, dict[str, Any]], dict[str, Any]] | None = None
        self.override: Callable[[httpx.Request], httpx.Response | None] | None = None
        self.frozen_size: int | None = None  # serve checkpoints for this size

    @property
    def log(self) -> LogInstance:
        return log_from_key(f"http://{self.host}", spki(self.key.public_key()))

    @property
    def tree_hex(self) -> str:
        return f"{self.tree_id:016x}"

    def add(self, body: bytes) -> int:
        if body in self.bodies:
            return self.bodies.index(body)
        self.bodies.append(body)
        self.times.append(1_700_000_000 + len(self.bodies))
        return len(self.bodies) - 1

    def size(self) -> int:
        return self.frozen_size if self.frozen_size is not None else len(self.bodies)

    def root(self, size: int) -> bytes:
        if size == 0:
            return merkle.EMPTY_ROOT
        return merkle.root(merkle.hash_leaves(self.bodies[:size]))

    def checkpoint(self, size: int | None = None, signer: Any = None) -> str:
        size = self.size() if size is None else size
        cp = Checkpoint(f"{self.host} - {self.tree_id}", size, self.root(size))
        return sign_checkpoint(cp, signer or self.signer).decode()

    def entry(self, index: int) -> dict[str, Any]:
        size = self.size()
        body = self.bodies[index]
        leaf = merkle.leaf_hash(body)
        proof = merkle.inclusion_proof(merkle.hash_leaves(self.bodies[:size]), index, size)
        body_b64 = b64(body)
        set_sig = sign_set(
            set_payload(body_b64, self.times[index], self.log_id.hex(), index), self.key
        )
        inner = {
            "body": body_b64,
            "integratedTime": self.times[index],
            "logID": self.log_id.hex(),
            "logIndex": index,
            "verification": {
                "inclusionProof": {
                    "checkpoint": self.checkpoint(size),
                    "hashes": [h.hex() for h in proof],
                    "logIndex": index,
                    "rootHash": self.root(size).hex(),
                    "treeSize": size,
                },
                "signedEntryTimestamp": b64(set_sig),
            },
        }
        if self.tamper is not None:
            inner = self.tamper(index, inner)
        return {self.tree_hex + leaf.hex(): inner}

    def _json(self, obj: Any, status: int = 200, **headers: str) -> httpx.Response:
        return httpx.Response(status, json=obj, headers=headers)

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.override is not None:
            forced = self.override(request)
            if forced is not None:
                return forced
        path = request.url.path
        if request.method == "POST" and path == "/api/v1/log/entries":
            body = canonicalize_v1(json.loads(request.content))
            if body in self.bodies:
                i = self.bodies.index(body)
                eid = self.tree_hex + merkle.leaf_hash(body).hex()
                return self._json(
                    {"code": 409, "message": f"an equivalent entry already exists with UUID {eid}"},
                    409,
                    location=f"/api/v1/log/entries/{eid}",
                )
            i = self.add(body)
            return self._json(self.entry(i), 201)
        if path == "/api/v1/log/entries" and "logIndex" in request.url.params:
            i = int(request.url.params["logIndex"])
            if i >= self.size():
                return httpx.Response(404)
            return self._json(self.entry(i))
        m = re.fullmatch(r"/api/v1/log/entries/([0-9a-f]{64}|[0-9a-f]{80})", path)
        if m:
            uuid = m.group(1)[-64:]
            for i, b in enumerate(self.bodies[: self.size()]):
                if merkle.leaf_hash(b).hex() == uuid:
                    return self._json(self.entry(i))
            return httpx.Response(404)
        if path == "/api/v1/log/entries/retrieve":
            q = json.loads(request.content)
            n = sum(len(q.get(k, [])) for k in ("entryUUIDs", "logIndexes", "entries"))
            if n > 10:
                return self._json({"code": 422, "message": "more than max allowed 10"}, 422)
            out = [self.entry(i) for i in q.get("logIndexes", []) if i < self.size()]
            for u in q.get("entryUUIDs", []):
                for i, b in enumerate(self.bodies):
                    if merkle.leaf_hash(b).hex() == u[-64:]:
                        out.append(self.entry(i))
            for e in q.get("entries", []):
                body = canonicalize_v1(e)
                if body in self.bodies:
                    out.append(self.entry(self.bodies.index(body)))
            return self._json(out)
        if path == "/api/v1/log":
            size = self.size()
            return self._json(
                {
                    "rootHash": self.root(size).hex(),
                    "treeSize": size,
                    "signedTreeHead": self.checkpoint(size),
                    "treeID": str(self.tree_id),
                    "inactiveShards": None,
                }
            )
        if path == "/api/v1/log/proof":
            first = int(request.url.params["firstSize"])
            last = int(request.url.params["lastSize"])
            proof = merkle.consistency_proof(merkle.hash_leaves(self.bodies[:last]), first, last)
            return self._json(
                {"rootHash": self.root(last).hex(), "hashes": [h.hex() for h in proof]}
            )
        if path == "/api/v1/log/publicKey":
            pem = self.key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            return httpx.Response(
                200, content=pem, headers={"content-type": "application/x-pem-file"}
            )
        return httpx.Response(404)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)

    def async_transport(self) -> httpx.MockTransport:
        async def ahandler(request: httpx.Request) -> httpx.Response:
            await request.aread()
            return self.handler(request)

        return httpx.MockTransport(ahandler)


def other_ecdsa_signer(name: str) -> ECDSASigner:
    return ECDSASigner.generate(name)


def other_ed25519_signer(name: str) -> Ed25519Signer:
    return Ed25519Signer.generate(name)


def v2_request(n: int) -> dict[str, Any]:
    """A valid hashedRekordRequestV002 for artifact number ``n``."""
    digest, sig = artifact_signature(n)
    return hashedrekord_v002_request(digest, sig, _ARTIFACT_KEY.public_key())


_TILE_RE = re.compile(r"/tile/(entries|\d+)/((?:x\d{3}/)*\d{3})(?:\.p/(\d+))?")


class FakeV2Log:
    """A Rekor v2 log: POST entries, plus static checkpoint / tiles / bundles."""

    def __init__(self, origin: str = "rekor-v2.test") -> None:
        self.origin = origin
        self.signer = Ed25519Signer.generate(origin)
        self.public_key = self.signer.private_key.public_key()
        self.bodies: list[bytes] = []
        self.requests: list[httpx.Request] = []
        self.frozen_size: int | None = None
        self.drop_partials = False
        self.gzip_bundles = False
        self.tamper: Callable[[dict[str, Any]], None] | None = None
        self.override: Callable[[httpx.Request], httpx.Response | None] | None = None
        self.checkpoint_signer: Any = None

    @property
    def log(self) -> LogInstance:
        return log_from_key(f"http://{self.origin}", spki(self.public_key), api_version=2)

    def size(self) -> int:
        return self.frozen_size if self.frozen_size is not None else len(self.bodies)

    def leaves(self, size: int) -> Any:
        return merkle.hash_leaves(self.bodies[:size])

    def root(self, size: int) -> bytes:
        return merkle.root(self.leaves(size)) if size else merkle.EMPTY_ROOT

    def checkpoint(self, size: int | None = None) -> str:
        size = self.size() if size is None else size
        cp = Checkpoint(self.origin, size, self.root(size))
        return sign_checkpoint(cp, self.checkpoint_signer or self.signer).decode()

    def tile(self, level: int, index: int, width: int) -> bytes:
        span = 256**level
        leaves = self.leaves(self.size())
        out = []
        for j in range(width):
            lo = (index * 256 + j) * span
            out.append(merkle.root(leaves[lo : lo + span]))
        return b"".join(out)

    def entry_json(self, index: int) -> dict[str, Any]:
        size = self.size()
        proof = merkle.inclusion_proof(self.leaves(size), index, size)
        obj = {
            "logIndex": str(index),
            "logId": {"keyId": b64(self.log.log_id)},
            "kindVersion": {"kind": "hashedrekord", "version": "0.0.2"},
            "integratedTime": "0",
            "inclusionPromise": None,
            "inclusionProof": {
                "logIndex": str(index),
                "rootHash": b64(self.root(size)),
                "treeSize": str(size),
                "hashes": [b64(h) for h in proof],
                "checkpoint": {"envelope": self.checkpoint(size)},
            },
            "canonicalizedBody": b64(self.bodies[index]),
        }
        if self.tamper is not None:
            self.tamper(obj)
        return obj

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.override is not None:
            forced = self.override(request)
            if forced is not None:
                return forced
        path = request.url.path
        if request.method == "POST" and path == "/api/v2/log/entries":
            body = canonicalize_v2(json.loads(request.content))
            if body in self.bodies:
                i = self.bodies.index(body)
                return httpx.Response(
                    409,
                    json={
                        "code": 6,
                        "message": f"an equivalent entry exists with index {i}",
                        "details": [],
                    },
                    headers={"x-log-index": str(i)},
                )
            self.bodies.append(body)
            return httpx.Response(201, json=self.entry_json(len(self.bodies) - 1))
        if path == "/checkpoint":
            return httpx.Response(200, text=self.checkpoint())
        m = _TILE_RE.fullmatch(path)
        if m:
            kind, idx, w = m.groups()
            index = int(idx.replace("x", "").replace("/", ""))
            width = int(w) if w else 256
            size = self.size()
            level = 0 if kind == "entries" else int(kind)
            avail = size // 256**level - index * 256  # hashes this tile has now
            if avail < width or (w and avail >= 256 and self.drop_partials):
                return httpx.Response(404)  # not there yet, or partial deleted once full
            if kind == "entries":
                data = b"".join(
                    len(b).to_bytes(2, "big") + b
                    for b in self.bodies[index * 256 : index * 256 + width]
                )
                if self.gzip_bundles:
                    return httpx.Response(
                        200, content=gzip.compress(data), headers={"content-encoding": "gzip"}
                    )
                return httpx.Response(200, content=data)
            return httpx.Response(200, content=self.tile(level, index, width))
        return httpx.Response(404)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)

    def async_transport(self) -> httpx.MockTransport:
        async def ahandler(request: httpx.Request) -> httpx.Response:
            await request.aread()
            return self.handler(request)

        return httpx.MockTransport(ahandler)

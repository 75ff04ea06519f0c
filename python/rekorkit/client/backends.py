"""Where the logs are: presets, private URLs, the local server, and a resolver.

The public Sigstore instances are configuration only: nothing here contacts
them. Their URLs and keys are the ones in Sigstore's TUF trusted roots
(the Rekor OpenAPI and the rekor-tiles API); the v2 shard URL changes about
every six months, so real deployments should resolve it from a SigningConfig
rather than the preset.

Resolution order (first match wins): explicit arguments, ``REKORKIT_*``
environment variables, a config file, a Sigstore SigningConfig /
ClientTrustConfig / TrustedRoot JSON.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rekorkit.errors import MalformedError

__all__ = [
    "PRESETS",
    "Backend",
    "load_signing_config",
    "load_trusted_root_backends",
    "local",
    "private",
    "resolve_backends",
]

ENV_URL = "REKORKIT_REKOR_URL"
ENV_API_VERSION = "REKORKIT_REKOR_API_VERSION"
ENV_PUBLIC_KEY = "REKORKIT_REKOR_PUBLIC_KEY"
ENV_PRESET = "REKORKIT_REKOR_PRESET"
ENV_CONFIG = "REKORKIT_CONFIG"
ENV_SIGNING_CONFIG = "REKORKIT_SIGNING_CONFIG"
ENV_TRUSTED_ROOT = "REKORKIT_TRUSTED_ROOT"

LOCAL_DEFAULT_URL = "http://127.0.0.1:3000"


@dataclass(frozen=True, slots=True)
class Backend:
    """One Rekor log instance a client can talk to.

    Attributes:
        url: base URL (v1 API root, or v2 write URL).
        api_version: 1 (REST) or 2 (rekor-tiles).
        public_key: the log key as DER SubjectPublicKeyInfo, when known.
        key_details: Sigstore's key type name (``PKIX_ECDSA_P256_SHA_256``, ...).
        log_id: the 32-byte log ID (v1: SHA-256 of the SPKI; v2: C2SP key ID).
        read_url: the tile prefix for v2 reads (defaults to ``url``).
        valid_from: start of the validity window, if any.
        valid_to: end of the validity window (inclusive), if any.
        operator: who runs it, if known.
        mirrors: further URLs serving the same log, tried in order on failure.
        name: a short label.
    """

    url: str
    api_version: int = 1
    public_key: bytes | None = None
    key_details: str | None = None
    log_id: bytes | None = None
    read_url: str | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    operator: str | None = None
    mirrors: tuple[str, ...] = ()
    name: str = ""

    def __post_init__(self) -> None:
        if self.api_version not in (1, 2):
            raise ValueError(f"api_version must be 1 or 2, got {self.api_version}")
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"backend URL must be http(s): {self.url!r}")

    @property
    def key_name(self) -> str:
        """The checkpoint signer name: the URL without scheme or trailing slash.

        Rekor v2 names its checkpoint key after its URL (the rekor-tiles API).
        """
        return self.url.split("://", 1)[1].rstrip("/")

    @property
    def urls(self) -> tuple[str, ...]:
        """The base URL followed by its mirrors."""
        return (self.url, *self.mirrors)

    def valid_at(self, when: datetime) -> bool:
        """Whether ``when`` lies in the (closed) validity window."""
        if self.valid_from is not None and when < self.valid_from:
            return False
        return self.valid_to is None or when <= self.valid_to


def _b64(s: str) -> bytes:
    return base64.b64decode(s)


# Keys from Sigstore's TUF trusted roots (the Rekor OpenAPI and the rekor-tiles API).
PRESETS: Mapping[str, Backend] = {
    "production": Backend(
        "https://rekor.sigstore.dev",
        1,
        _b64(
            "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE2G2Y+2tabdTV5BcGiBIx0a9fAFwrkBbmLSGtks4L3qX6"
            "yYY0zufBnhC8Ur/iy55GhWP/9A/bY2LhC30M9+RYtw=="
        ),
        "PKIX_ECDSA_P256_SHA_256",
        _b64("wNI9atQGlz+VWfO6LRygH4QUfY/8W4RFwiT5i5WRgB0="),
        operator="sigstore.dev",
        name="production",
    ),
    "staging": Backend(
        "https://rekor.sigstage.dev",
        1,
        _b64(
            "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEDODRU688UYGuy54mNUlaEBiQdTE9nYLr0lg6RXowI/QV"
            "/RE1azBn4Eg5/2uTOMbhB1/gfcHzijzFi9Tk+g1Prg=="
        ),
        "PKIX_ECDSA_P256_SHA_256",
        _b64("0y8wo8MtY5wrdiIFohx7sHeI5oKDpK5vQhGHI6G+pJY="),
        operator="sigstore.dev",
        name="staging",
    ),
    "v2-production": Backend(
        "https://log2025-1.rekor.sigstore.dev",
        2,
        _b64("MCowBQYDK2VwAyEAt8rlp1knGwjfbcXAYPYAkn0XiLz1x8O4t0YkEhie244="),
        "PKIX_ED25519",
        _b64("zxGZFVvd0FEmjR8WrFwMdcAJ9vtaY/QXf44Y1wUeP6A="),
        valid_from=datetime(2025, 9, 23, tzinfo=UTC),
        operator="sigstore.dev",
        name="v2-production",
    ),
}


def _load_key(key: bytes | str | Path | None) -> bytes | None:
    """A public key as DER SPKI from PEM/DER bytes, PEM text or a file path."""
    if key is None:
        return None
    if isinstance(key, Path) or (isinstance(key, str) and not key.lstrip().startswith("-----")):
        key = Path(key).read_bytes()
    if isinstance(key, str):
        key = key.encode()
    if key.lstrip().startswith(b"-----"):
        from cryptography.hazmat.primitives import serialization

        try:
            loaded = serialization.load_pem_public_key(key)
        except ValueError as exc:
            raise MalformedError(f"not a PEM public key: {exc}", what="public key") from exc
        return loaded.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    return bytes(key)


def private(
    url: str,
    *,
    api_version: int = 1,
    public_key: bytes | str | Path | None = None,
    mirrors: Sequence[str] = (),
    read_url: str | None = None,
) -> Backend:
    """A privately run log at ``url`` with its key (PEM/DER bytes, PEM text or a path)."""
    der = _load_key(public_key)
    log_id = hashlib.sha256(der).digest() if der is not None and api_version == 1 else None
    return Backend(
        url.rstrip("/"),
        api_version,
        der,
        log_id=log_id,
        read_url=read_url,
        mirrors=tuple(m.rstrip("/") for m in mirrors),
        name="private",
    )


def local(
    url: str = LOCAL_DEFAULT_URL,
    *,
    api_version: int = 1,
    public_key: bytes | str | Path | None = None,
) -> Backend:
    """The local ``rekorkit serve`` log (by default on 127.0.0.1:3000)."""
    return replace(private(url, api_version=api_version, public_key=public_key), name="local")


def _parse_time(value: Any, where: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedError(f"{where} is not a timestamp string", what="trust config", where=where)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise MalformedError(
            f"{where}: bad timestamp {value!r}", what="trust config", where=where
        ) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _norm(url: str) -> str:
    return url.rstrip("/").lower()


def _read_json(source: str | Path | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(source, Mapping):
        return source
    try:
        data = json.loads(Path(source).read_text())
    except ValueError as exc:
        raise MalformedError(f"{source}: not JSON: {exc}", what="trust config") from exc
    if not isinstance(data, dict):
        raise MalformedError(f"{source}: expected a JSON object", what="trust config")
    return data


def load_trusted_root_backends(source: str | Path | Mapping[str, Any]) -> list[Backend]:
    """Every transparency log in a TrustedRoot (or ClientTrustConfig) as a Backend.

    The API version is inferred from the key type: Ed25519 logs are rekor-tiles
    (v2), the rest v1; pass an explicit version to override when resolving.
    """
    data = _read_json(source)
    root = data.get("trustedRoot", data)
    tlogs = root.get("tlogs")
    if not isinstance(tlogs, list):
        raise MalformedError("trusted root has no tlogs list", what="trusted root", where="tlogs")
    out = []
    for i, tlog in enumerate(tlogs):
        where = f"tlogs[{i}]"
        try:
            url = tlog["baseUrl"]
            pk = tlog["publicKey"]
            der = _b64(pk["rawBytes"])
            details = pk.get("keyDetails")
            valid = pk.get("validFor", {})
            log_id = _b64(tlog["logId"]["keyId"])
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedError(f"{where}: {exc!r}", what="trusted root", where=where) from exc
        out.append(
            Backend(
                url.rstrip("/"),
                2 if details == "PKIX_ED25519" else 1,
                der,
                details,
                log_id,
                valid_from=_parse_time(valid.get("start"), f"{where}.publicKey.validFor.start"),
                valid_to=_parse_time(valid.get("end"), f"{where}.publicKey.validFor.end"),
                name=url.split("://", 1)[-1].rstrip("/"),
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class SigningConfigLogs:
    """The Rekor part of a SigningConfig.

    Attributes:
        backends: logs valid now, highest API version first, then file order.
        selector: ``ANY``, ``ALL`` or ``EXACT`` (how many logs to write to).
        count: the count for ``EXACT``.
    """

    backends: tuple[Backend, ...]
    selector: str = "ANY"
    count: int | None = None


def load_signing_config(
    source: str | Path | Mapping[str, Any],
    *,
    trusted_root: str | Path | Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> SigningConfigLogs:
    """The write logs of a SigningConfig (or ClientTrustConfig), with keys attached.

    Keys come from ``trusted_root`` or, for a ClientTrustConfig, its own
    ``trustedRoot``, matched by base URL.
    """
    data = _read_json(source)
    signing = data.get("signingConfig", data.get("signing_config", data))
    urls = signing.get("rekorTlogUrls")
    if not isinstance(urls, list):
        raise MalformedError(
            "signing config has no rekorTlogUrls list", what="signing config", where="rekorTlogUrls"
        )
    keys: dict[str, Backend] = {}
    root_src = trusted_root if trusted_root is not None else data.get("trustedRoot")
    if root_src is not None:
        keys = {_norm(b.url): b for b in load_trusted_root_backends(root_src)}
    when = now or datetime.now(UTC)
    found: list[tuple[int, int, Backend]] = []
    for i, item in enumerate(urls):
        where = f"rekorTlogUrls[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("url"), str):
            raise MalformedError(f"{where}: missing url", what="signing config", where=where)
        version = item.get("majorApiVersion", 1)
        if version not in (1, 2):
            continue  # an API this client does not speak: skip, do not fail
        valid = item.get("validFor") or {}
        known = keys.get(_norm(item["url"]))
        backend = Backend(
            item["url"].rstrip("/"),
            version,
            known.public_key if known else None,
            known.key_details if known else None,
            known.log_id if known else None,
            valid_from=_parse_time(valid.get("start"), f"{where}.validFor.start"),
            valid_to=_parse_time(valid.get("end"), f"{where}.validFor.end"),
            operator=item.get("operator"),
            name=item["url"].split("://", 1)[-1].rstrip("/"),
        )
        if backend.valid_at(when):
            found.append((-version, i, backend))
    found.sort(key=lambda t: (t[0], t[1]))
    config = signing.get("rekorTlogConfig") or {}
    return SigningConfigLogs(
        tuple(b for _, _, b in found), str(config.get("selector", "ANY")), config.get("count")
    )


def _from_config_file(path: Path) -> dict[str, Any]:
    """The ``[rekor]`` table of a TOML or JSON config file."""
    text = path.read_bytes()
    try:
        data: Any = tomllib.loads(text.decode()) if path.suffix == ".toml" else json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedError(f"{path}: {exc}", what="config file") from exc
    section = data.get("rekor", data) if isinstance(data, dict) else None
    if not isinstance(section, dict):
        raise MalformedError(f"{path}: expected a [rekor] table", what="config file", where="rekor")
    return section


def resolve_backends(
    url: str | None = None,
    *,
    api_version: int | None = None,
    public_key: bytes | str | Path | None = None,
    preset: str | None = None,
    config_file: str | Path | None = None,
    signing_config: str | Path | Mapping[str, Any] | None = None,
    trusted_root: str | Path | Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> list[Backend]:
    """Decide which log(s) to use; the first source that names one wins.

    Sources, in order: explicit ``url``/``preset``; the environment
    (``REKORKIT_REKOR_URL``, ``_API_VERSION``, ``_PUBLIC_KEY``, ``_PRESET``);
    a config file (``config_file`` or ``REKORKIT_CONFIG``; keys ``url``,
    ``api_version``, ``public_key``, ``preset``, ``mirrors``); a SigningConfig
    or TrustedRoot (arguments or ``REKORKIT_SIGNING_CONFIG`` /
    ``REKORKIT_TRUSTED_ROOT``). Nothing is contacted.

    Raises:
        ValueError: no source names a log, or a preset is unknown.
    """
    env = os.environ if env is None else env

    def pick(
        u: str | None, v: int | None, k: Any, p: str | None, mirrors: Sequence[str] = ()
    ) -> list[Backend] | None:
        if p:
            if p not in PRESETS:
                raise ValueError(f"unknown preset {p!r}; known: {', '.join(PRESETS)}")
            return [PRESETS[p]]
        if u:
            return [private(u, api_version=v or 1, public_key=k, mirrors=mirrors)]
        return None

    chosen = pick(url, api_version, public_key, preset)
    if chosen is None:
        ver = env.get(ENV_API_VERSION)
        chosen = pick(
            env.get(ENV_URL),
            int(ver) if ver and ver.isdigit() else api_version,
            env.get(ENV_PUBLIC_KEY) or public_key,
            env.get(ENV_PRESET),
        )
    cfg_path = config_file or env.get(ENV_CONFIG)
    if chosen is None and cfg_path:
        section = _from_config_file(Path(cfg_path))
        chosen = pick(
            section.get("url"),
            section.get("api_version", api_version),
            section.get("public_key") or public_key,
            section.get("preset"),
            section.get("mirrors", ()),
        )
    if chosen is None:
        sc = signing_config or env.get(ENV_SIGNING_CONFIG)
        tr = trusted_root or env.get(ENV_TRUSTED_ROOT)
        if sc:
            chosen = list(load_signing_config(sc, trusted_root=tr, now=now).backends)
        elif tr:
            when = now or datetime.now(UTC)
            chosen = [b for b in load_trusted_root_backends(tr) if b.valid_at(when)]
        if chosen is not None and api_version is not None:
            chosen = [b for b in chosen if b.api_version == api_version]
    if not chosen:
        raise ValueError(
            "no Rekor log configured: pass url= or preset= (e.g. 'production'), "
            f"set {ENV_URL} or {ENV_PRESET}, or give a config file / signing config"
        )
    return chosen

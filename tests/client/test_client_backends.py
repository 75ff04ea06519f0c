"""Backend presets and the resolver (explicit args, env, config file, Sigstore JSON)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from rekorkit.client.backends import (
    PRESETS,
    Backend,
    load_signing_config,
    load_trusted_root_backends,
    local,
    private,
    resolve_backends,
)
from rekorkit.errors import MalformedError
from vector_files import require_vectors


def pem_key() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, der


def test_presets_match_their_log_ids() -> None:
    for name in ("production", "staging"):
        b = PRESETS[name]
        assert b.api_version == 1
        assert b.public_key is not None
        # v1 logID = SHA-256(DER SPKI) (the Rekor OpenAPI, logID)
        assert hashlib.sha256(b.public_key).digest() == b.log_id
    assert PRESETS["production"].key_name == "rekor.sigstore.dev"
    assert PRESETS["v2-production"].api_version == 2


def test_private_and_local() -> None:
    pem, der = pem_key()
    b = private("https://rekor.internal/", public_key=pem, mirrors=["https://m2/"])
    assert b.url == "https://rekor.internal"
    assert b.public_key == der
    assert b.log_id == hashlib.sha256(der).digest()
    assert b.urls == ("https://rekor.internal", "https://m2")
    loc = local("http://127.0.0.1:4000", api_version=2)
    assert loc.name == "local" and loc.api_version == 2 and loc.key_name == "127.0.0.1:4000"


def test_backend_validation() -> None:
    with pytest.raises(ValueError):
        Backend("ftp://x")
    with pytest.raises(ValueError):
        Backend("https://x", api_version=3)


def test_bad_pem_is_malformed() -> None:
    with pytest.raises(MalformedError):
        private(
            "https://x", public_key=b"-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n"
        )


def test_resolver_precedence(tmp_path: Path) -> None:
    pem, der = pem_key()
    keyfile = tmp_path / "log.pem"
    keyfile.write_bytes(pem)
    cfg = tmp_path / "rekorkit.toml"
    cfg.write_text('[rekor]\nurl = "https://from-file"\napi_version = 2\n')
    env = {"REKORKIT_REKOR_URL": "https://from-env", "REKORKIT_REKOR_PUBLIC_KEY": str(keyfile)}

    assert resolve_backends("https://explicit", env=env)[0].url == "https://explicit"
    from_env = resolve_backends(env=env, config_file=cfg)[0]
    assert from_env.url == "https://from-env" and from_env.public_key == der
    from_file = resolve_backends(env={}, config_file=cfg)[0]
    assert (from_file.url, from_file.api_version) == ("https://from-file", 2)
    assert resolve_backends(env={"REKORKIT_REKOR_PRESET": "staging"})[0] is PRESETS["staging"]
    assert resolve_backends(preset="production", env=env)[0] is PRESETS["production"]


def test_resolver_json_config_with_env_path(tmp_path: Path) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"rekor": {"preset": "v2-production"}}))
    assert resolve_backends(env={"REKORKIT_CONFIG": str(cfg)})[0].api_version == 2


def test_resolver_refuses_nothing_and_unknown_preset() -> None:
    with pytest.raises(ValueError, match="no Rekor log configured"):
        resolve_backends(env={})
    with pytest.raises(ValueError, match="unknown preset"):
        resolve_backends(preset="nope", env={})


def test_bad_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[rekor\n")
    with pytest.raises(MalformedError):
        resolve_backends(env={}, config_file=cfg)


def test_real_trusted_root() -> None:
    path = require_vectors("sigstore-python", "embedded-trust", "prod.trusted_root.json")
    logs = load_trusted_root_backends(path)
    by_url = {b.url: b for b in logs}
    v1 = by_url["https://rekor.sigstore.dev"]
    assert v1.api_version == 1 and v1.log_id == PRESETS["production"].log_id
    v2 = by_url["https://log2025-1.rekor.sigstore.dev"]
    assert v2.api_version == 2 and v2.public_key == PRESETS["v2-production"].public_key
    assert v2.valid_from == datetime(2025, 9, 23, tzinfo=UTC)


def test_staging_validity_windows() -> None:
    path = require_vectors("sigstore-python", "embedded-trust", "staging.trusted_root.json")
    when = datetime(2025, 10, 1, tzinfo=UTC)
    chosen = resolve_backends(trusted_root=str(path), env={}, now=when, api_version=2)
    # alpha1 ended 2025-09-04, alpha2 2025-09-28: only alpha3 is valid on Oct 1
    assert [b.url for b in chosen] == ["https://log2025-alpha3.rekor.sigstage.dev"]


def test_real_client_trust_config() -> None:
    path = require_vectors("sigstore-python", "test-assets", "trust_config", "config.v1.json")
    logs = load_signing_config(path, now=datetime(2026, 1, 1, tzinfo=UTC))
    assert [b.url for b in logs.backends] == [
        "https://rekor-v2.example.com",
        "https://rekor.example.com",
    ]
    assert [b.api_version for b in logs.backends] == [2, 1]
    assert logs.selector == "ANY"
    assert logs.backends[0].operator == "example.com"
    via_resolver = resolve_backends(signing_config=str(path), env={}, api_version=1)
    assert [b.url for b in via_resolver] == ["https://rekor.example.com"]


def test_signing_config_attaches_keys_by_url() -> None:
    root = require_vectors("sigstore-python", "embedded-trust", "prod.trusted_root.json")
    sc = {
        "mediaType": "application/vnd.dev.sigstore.signingconfig.v0.2+json",
        "rekorTlogUrls": [
            {
                "url": "https://log2025-1.rekor.sigstore.dev",
                "majorApiVersion": 2,
                "validFor": {"start": "2025-09-23T00:00:00Z"},
            },
            {
                "url": "https://rekor.sigstore.dev/",
                "majorApiVersion": 1,
                "validFor": {"start": "2021-01-12T11:53:27Z"},
            },
            {
                "url": "https://future",
                "majorApiVersion": 3,
                "validFor": {"start": "2020-01-01T00:00:00Z"},
            },
        ],
        "rekorTlogConfig": {"selector": "EXACT", "count": 1},
    }
    logs = load_signing_config(sc, trusted_root=root, now=datetime(2026, 1, 1, tzinfo=UTC))
    assert [b.api_version for b in logs.backends] == [2, 1]
    assert logs.backends[0].public_key == PRESETS["v2-production"].public_key
    assert logs.backends[1].log_id == PRESETS["production"].log_id
    assert (logs.selector, logs.count) == ("EXACT", 1)


def test_malformed_signing_config() -> None:
    with pytest.raises(MalformedError) as info:
        load_signing_config({"rekorTlogUrls": [{"majorApiVersion": 1}]})
    assert info.value.where == "rekorTlogUrls[0]"
    with pytest.raises(MalformedError):
        load_trusted_root_backends({"tlogs": [{"baseUrl": "https://x"}]})

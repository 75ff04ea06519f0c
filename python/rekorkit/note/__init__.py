"""Signed notes (c2sp.org/signed-note) and their keys.

* :mod:`rekorkit.note.signed`: parsing, verifying and signing notes;
  cosignatures (c2sp.org/tlog-cosignature);
* :mod:`rekorkit.note.keys`: verifier-key strings, verifiers and signers
  (Ed25519, ECDSA P-256, RSA, timestamped cosignatures).
"""

from __future__ import annotations

from rekorkit.note.keys import (
    RSA_IDENTIFIER,
    CosignatureSigner,
    CosignatureVerifier,
    ECDSASigner,
    ECDSAVerifier,
    Ed25519Signer,
    Ed25519Verifier,
    NoteSigner,
    NoteVerifier,
    RFC6962Verifier,
    RSAVerifier,
    check_key_name,
    cosignature_message,
    format_verifier_key,
    parse_verifier_key,
)
from rekorkit.note.signed import (
    MAX_NOTE_SIZE,
    MAX_SIGNATURES,
    Note,
    NoteSignature,
    VerifiedNote,
    clear_signature_cache,
    parse_note,
    sign_note,
    verify_note,
)

__all__ = [
    "MAX_NOTE_SIZE",
    "MAX_SIGNATURES",
    "RSA_IDENTIFIER",
    "CosignatureSigner",
    "CosignatureVerifier",
    "ECDSASigner",
    "ECDSAVerifier",
    "Ed25519Signer",
    "Ed25519Verifier",
    "Note",
    "NoteSignature",
    "NoteSigner",
    "NoteVerifier",
    "RFC6962Verifier",
    "RSAVerifier",
    "VerifiedNote",
    "check_key_name",
    "clear_signature_cache",
    "cosignature_message",
    "format_verifier_key",
    "parse_note",
    "parse_verifier_key",
    "sign_note",
    "verify_note",
]

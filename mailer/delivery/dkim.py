"""DKIM signing (dkimpy). When signing is configured it must succeed: an unsigned message is
never sent in its place (C25)."""

from __future__ import annotations

from pathlib import Path

import dkim

# RFC 8058 §3.1: the signature must cover the one-click headers, and these identify the mail.
REQUIRED_HEADERS = (
    b"from",
    b"subject",
    b"date",
    b"message-id",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
)
SIGNED_HEADERS = (
    *REQUIRED_HEADERS,
    b"to",
    b"reply-to",
    b"mime-version",
    b"content-type",
    b"feedback-id",
)


class DkimError(Exception):
    """Signing is configured but failed, or would leave a required header out."""


class DkimSigner:
    def __init__(
        self,
        selector: str,
        domain: str,
        private_key: bytes,
        *,
        algorithm: str = "rsa-sha256",
        headers: tuple[bytes, ...] = SIGNED_HEADERS,
    ) -> None:
        missing = [h.decode() for h in REQUIRED_HEADERS if h not in {x.lower() for x in headers}]
        if missing:
            raise DkimError(f"DKIM h= would leave out {', '.join(missing)}: refusing to sign")
        if algorithm not in ("rsa-sha256", "ed25519-sha256"):
            raise DkimError(f"unsupported DKIM algorithm {algorithm}")
        self.selector = selector.encode()
        self.domain = domain.encode()
        self.private_key = private_key
        self.algorithm = algorithm.encode()
        self.headers = list(headers)

    @classmethod
    def from_file(cls, selector: str, domain: str, key_file: Path) -> DkimSigner:
        key = key_file.read_bytes()
        algorithm = "ed25519-sha256" if b"RSA" not in key and len(key) < 200 else "rsa-sha256"
        return cls(selector, domain, key, algorithm=algorithm)

    def sign(self, message: bytes) -> bytes:
        try:
            signature = dkim.sign(
                message,
                self.selector,
                self.domain,
                self.private_key,
                include_headers=self.headers,
                canonicalize=(b"relaxed", b"relaxed"),
                signature_algorithm=self.algorithm,
            )
        except Exception as exc:
            raise DkimError(f"DKIM signing failed: {type(exc).__name__}") from exc
        if not signature:
            raise DkimError("DKIM signing produced no signature")
        header = bytes(signature).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        return header + message

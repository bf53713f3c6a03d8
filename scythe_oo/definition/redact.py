"""Keeping secrets out of everything the framework writes.

Error messages travel far: into failures.pq, the leaf journal, manifest.yml, logs and Hatchet's
dashboard, all of which are shared. Libraries put credentials into their messages more often
than one would think (an endpoint URL with ``user:password@``, a presigned URL's signature, a
proxy echoing a header), so every message the framework records passes through ``redact``.
"""

from __future__ import annotations

import os
import re

SECRET_SETTINGS = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "HATCHET_CLIENT_TOKEN",
)
"""Settings whose values are secrets wherever they appear."""

MASK = "***"

# scheme://user:password@host -> scheme://user:***@host (and a lone user@, kept: it is a name)
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/@:\s]*):[^/@\s]*@")
# Query parameters that carry a credential: presigned S3 URLs, tokens, keys, passwords.
_SECRET_PARAMS = re.compile(
    r"(?i)(?P<key>[?&](?:x-amz-(?:signature|credential|security-token)|signature|sig|token|"
    r"access_token|api[_-]?key|key|password|secret)=)[^&#\s'\"]+"
)
_SHORTEST_SECRET = 8
"""Values shorter than this are not masked where they appear: "true" is not a secret."""


def redact(text: str) -> str:
    """``text`` with URL passwords, credential query parameters and secret setting values
    masked."""
    if not text:
        return text
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    text = _SECRET_PARAMS.sub(lambda m: f"{m['key']}{MASK}", text)
    for name in SECRET_SETTINGS:
        value = os.environ.get(name, "")
        if len(value) >= _SHORTEST_SECRET:
            text = text.replace(value, MASK)
    for value in _endpoint_passwords():
        text = text.replace(value, MASK)
    return text


def has_password(url: str) -> bool:
    """Whether ``url`` carries a password (``scheme://user:password@host``)."""
    return bool(_USERINFO.search(url))


def _endpoint_passwords() -> list[str]:
    """Passwords embedded in endpoint settings, which libraries may print decoded or split."""
    found = []
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "HATCHET_CLIENT_SERVER_URL"):
        match = _USERINFO.search(os.environ.get(name, ""))
        if match:
            password = match.group(0)[len(match["scheme"]) + len(match["user"]) + 1 : -1]
            if len(password) >= 3:
                found.append(password)
    return found

"""Every environment variable esbundle reads, in one place, read at call time. Flag > environment > default."""
from __future__ import annotations

import os
from pathlib import Path

# A file or a directory of public keys to trust when no --trusted-key is given (several joined by os.pathsep).
TRUSTED_KEYS = "ESBUNDLE_TRUSTED_KEYS"
# Passphrase of the signing key; never taken as a command-line argument.
KEY_PASSPHRASE = "ESBUNDLE_KEY_PASSPHRASE"
# Where `esbundle load` appends its receipts.
AUDIT_LOG = "ESBUNDLE_AUDIT_LOG"
# Any non-empty value turns progress bars off.
NO_PROGRESS = "ESBUNDLE_NO_PROGRESS"
# Reproducible bundles: the creation time, as Unix seconds (the reproducible-builds convention).
SOURCE_DATE_EPOCH = "SOURCE_DATE_EPOCH"
# Where `export --elastic-model` fetches Elastic's packages (default: Elastic's model server).
ELASTIC_MODELS_URL = "ESBUNDLE_ELASTIC_MODELS_URL"
# Elasticsearch connection.
ES_URL = "ES_URL"
ES_USERNAME = "ES_USERNAME"
ES_PASSWORD = "ES_PASSWORD"
ES_API_KEY = "ES_API_KEY"


def get(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value else None


def trusted_key_paths(flag_values: tuple[Path, ...]) -> tuple[Path, ...]:
    if flag_values:
        return flag_values
    value = get(TRUSTED_KEYS)
    return tuple(Path(p) for p in value.split(os.pathsep) if p) if value else ()


def audit_log_path() -> Path:
    value = get(AUDIT_LOG)
    if value:
        return Path(value)
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "esbundle" / "receipts.jsonl"


def progress_disabled() -> bool:
    return get(NO_PROGRESS) is not None


_SECRETS: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a credential so the error boundary can scrub it from anything it prints."""
    if value and len(value) >= 3:
        _SECRETS.add(value)


def scrub(text: str) -> str:
    for secret in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text

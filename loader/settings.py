"""Every environment variable esbundle reads, in one place, read at call time. Flag > environment > default."""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote

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
# Elastic Cloud id instead of ES_URL (eland's variable); ES_URL and CLOUD_ID both set without a flag is an error.
CLOUD_ID = "CLOUD_ID"
# The Hugging Face hub token of `export`: --hub-access-token > HUB_ACCESS_TOKEN (eland's name) > HF_TOKEN
# (huggingface_hub's); with none of them huggingface_hub falls back on the token saved by `hf auth login`.
HUB_ACCESS_TOKEN = "HUB_ACCESS_TOKEN"
HF_TOKEN = "HF_TOKEN"
# Proxies, honoured by the HTTP clients themselves (the hub download's httpx reads both cases, and NO_PROXY);
# read here to scrub credentials written into a proxy URL, and for cluster connections (environment_proxy).
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


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


def environment_proxies() -> dict[str, str]:
    """The proxy variables set, by name (a cluster connection with none of them and no --proxy goes direct)."""
    return {name: value for name in PROXY_VARIABLES if (value := get(name))}


def environment_proxy(url: str) -> str | None:
    """The proxy the environment names for a cluster URL, read as `requests` reads it (HTTPS_PROXY or HTTP_PROXY
    by the URL's scheme, else ALL_PROXY; lower case first), or None when NO_PROXY (or no_proxy) matches its host:
    a name, a domain suffix, an address or a network like 10.0.0.0/8."""
    if not environment_proxies():
        return None
    from requests.utils import get_environ_proxies, select_proxy

    return select_proxy(url, get_environ_proxies(url))


def hub_token(flag_value: str | None) -> tuple[str | None, str | None]:
    """The hub token and where it came from (a flag or variable name, never the value); (None, None): none given."""
    if flag_value:
        return flag_value, "--hub-access-token"
    for name in (HUB_ACCESS_TOKEN, HF_TOKEN):
        value = get(name)
        if value:
            return value, name
    return None, None


def register_proxy_secrets() -> None:
    """Scrub the credentials written into a proxy URL in the environment (http://user:secret@proxy:3128), as
    written and percent-decoded."""
    for name in PROXY_VARIABLES:
        rest = (get(name) or "").split("://", 1)[-1]
        if "@" in rest:
            userinfo = rest.rsplit("@", 1)[0]
            secret = userinfo.partition(":")[2] or userinfo
            register_secret(secret)
            register_secret(unquote(secret))


_SECRETS: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a credential so the error boundary can scrub it from anything it prints."""
    if value and len(value) >= 3:
        _SECRETS.add(value)


def scrub(text: str) -> str:
    for secret in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text

"""Where the model comes from: a Hugging Face hub repository (through `huggingface_hub`) or a local directory.

The connected side's one network chokepoint: nothing else in the export talks to the hub, and everything after
this stage loads from the local folder it returns (transformers is always given a path, never a hub id).

The token (private and gated models) is passed to `huggingface_hub` as an argument, never through the environment:
--hub-access-token > HUB_ACCESS_TOKEN (eland's name) > HF_TOKEN (`settings.hub_token`); with none of them
`huggingface_hub` uses the token saved by `hf auth login`. It is registered as a secret, so the error boundary
scrubs it, and it is never part of a `Source`'s description (which is what the bundle records).
`huggingface_hub` itself honours HF_HUB_OFFLINE (serve from the cache only), HF_HOME / HF_HUB_CACHE and HF_ENDPOINT,
and its HTTP client (httpx, trust_env on) honours HTTPS_PROXY / HTTP_PROXY / ALL_PROXY / NO_PROXY, lower-case forms
too: we leave all of those to it, and only scrub credentials written into a proxy URL.

Downloads happen in two steps: the small files first (configs, tokenizer), so an unsupported tokenizer or a task
that does not fit is refused before gigabytes of weights arrive; then the weights.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loader import settings
from loader.bundle.content import sha256_file
from loader.errors import ModelError, UsageError

# Configs, tokenizer files (vocab.txt, merges.txt, vocab.json, sentencepiece models), sentence-transformers
# module configs. Small, and all that is needed to decide whether the model can be exported at all.
LIGHT_PATTERNS = ["*.json", "*.txt", "*.model", "*.spm", "*.vocab"]
# Files other frameworks use; never loaded here, so neither downloaded nor recorded as used.
IGNORE_PATTERNS = [
    "onnx/*", "openvino/*", "coreml/*", "*.onnx", "*.onnx_data", "*.h5", "*.msgpack", "*.ot", "*.tflite",
    "*.mlmodel", "*.gguf", "tf_model*", "flax_model*", "rust_model*", "*.md", "*.png", "*.jpg",
]
WEIGHT_PATTERNS = ["*.safetensors"]
LEGACY_WEIGHT_PATTERNS = ["*.bin", "*.pt", "*.pth"]
_SHA = re.compile(r"^[0-9a-f]{40}$")
TOKEN_HINT = f"give a token that can read it: --hub-access-token, or {settings.HUB_ACCESS_TOKEN} or {settings.HF_TOKEN}"


@dataclass(frozen=True)
class Source:
    """A model folder on local disk, and how it got there."""

    path: Path
    kind: str  # "hub" or "directory"
    hub_model_id: str | None = None
    revision: str | None = None
    commit_sha: str | None = None

    @property
    def name(self) -> str:
        """What the default Elasticsearch model id is derived from."""
        return self.hub_model_id or self.path.name

    def describe(self) -> dict[str, Any]:
        if self.kind == "hub":
            return {"kind": "hub", "hub_model_id": self.hub_model_id, "revision": self.revision or "main",
                    "commit_sha": self.commit_sha}
        return {"kind": "directory", "directory": str(self.path)}


def local_source(directory: Path) -> Source:
    path = directory.expanduser()
    if not path.exists():
        raise UsageError(f"--model-dir {directory}: does not exist")
    if not path.is_dir():
        raise ModelError(f"--model-dir {directory}: not a directory")
    return Source(path=path.resolve(), kind="directory")


def _hub_download(hub_model_id: str, revision: str | None, given_token: str | None, **patterns: Any) -> Path:
    """A snapshot of the files matching `patterns`; `given_token`: --hub-access-token (None: not given), ahead of
    the environment's."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    token, origin = settings.hub_token(given_token)
    settings.register_secret(token)  # scrubbed from anything the error boundary prints
    settings.register_proxy_secrets()
    with_token = f"the token from {origin}" if origin else "no token (other than one saved by `hf auth login`)"
    what = f"hub model {hub_model_id}" + (f" at revision {revision}" if revision else "")
    try:
        return Path(snapshot_download(hub_model_id, revision=revision, token=token, **patterns))
    except GatedRepoError:
        raise ModelError(f"{what}: gated; access has not been granted to {with_token}",
                         hint="accept the model's terms on the hub, then " + TOKEN_HINT) from None
    except RevisionNotFoundError:
        raise ModelError(f"{what}: no such revision (branch, tag or commit)") from None
    except RepositoryNotFoundError:
        raise ModelError(f"{what}: not found, or private and not readable with {with_token}",
                         hint="check the id (a path is taken for a local folder only if that directory exists); for a "
                              "private model " + TOKEN_HINT) from None
    except LocalEntryNotFoundError as exc:
        if isinstance(exc.__cause__, OfflineModeIsEnabled):
            raise ModelError(f"{what}: not in the local cache, and HF_HUB_OFFLINE forbids downloading it",
                             hint="download it once while online, or unset HF_HUB_OFFLINE") from None
        cause = str(exc.__cause__ or "no answer").splitlines()[0]
        raise ModelError(f"{what}: the hub could not be reached ({cause}), and the model is not in the local cache",
                         hint="check the network; behind a proxy set HTTPS_PROXY (HTTP_PROXY for an http:// "
                              "HF_ENDPOINT), and NO_PROXY for the hosts reached directly") from None
    except HfHubHTTPError as exc:
        if exc.response.status_code == 401:  # the hub's answer to a token it does not know (revoked, mistyped)
            raise ModelError(f"{what}: the hub refused {with_token} (401 Unauthorized)", hint=TOKEN_HINT) from None
        raise ModelError(f"{what}: the hub refused the download ({exc})") from None
    except OSError as exc:  # connection failures surface as OSError subclasses
        raise ModelError(f"{what}: download failed ({exc})") from None


def hub_source_light(hub_model_id: str, revision: str | None, given_token: str | None = None) -> Source:
    """Fetch only the small files and record the commit the revision resolved to."""
    path = _hub_download(hub_model_id, revision, given_token, allow_patterns=LIGHT_PATTERNS,
                         ignore_patterns=IGNORE_PATTERNS)
    # The snapshot folder is named after the resolved commit (huggingface_hub's cache layout), online or offline.
    sha = path.name if _SHA.match(path.name) else None
    return Source(path=path, kind="hub", hub_model_id=hub_model_id, revision=revision, commit_sha=sha)


def fetch_weights(source: Source, given_token: str | None = None) -> Source:
    """Complete a hub snapshot with the weights (safetensors, or the legacy pickles when there are none)."""
    if source.kind != "hub" or source.hub_model_id is None:
        return source
    # Pin to the commit already resolved, so the weights cannot come from a newer push than the configs.
    revision = source.commit_sha or source.revision
    path = _hub_download(source.hub_model_id, revision, given_token, allow_patterns=LIGHT_PATTERNS + WEIGHT_PATTERNS,
                         ignore_patterns=IGNORE_PATTERNS)
    if not any(path.rglob("*.safetensors")):
        path = _hub_download(source.hub_model_id, revision, given_token,
                             allow_patterns=LIGHT_PATTERNS + LEGACY_WEIGHT_PATTERNS, ignore_patterns=IGNORE_PATTERNS)
    return Source(path=path, kind="hub", hub_model_id=source.hub_model_id, revision=source.revision,
                  commit_sha=source.commit_sha)


def used_files(root: Path) -> list[str]:
    """POSIX relative paths of the files the export may read, sorted: hidden folders (.git, .cache) and other
    frameworks' files are left out, as are pickled weights beside safetensors (transformers prefers those)."""
    found: list[str] = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if any(part.startswith(".") for part in Path(rel).parts) or not path.is_file():
            continue
        if any(fnmatch.fnmatch(rel, pattern) for pattern in IGNORE_PATTERNS):
            continue
        if path.suffix in (".bin", ".pt", ".pth") and any(path.parent.glob("*.safetensors")):
            continue
        found.append(rel)
    return found


def hash_files(root: Path) -> dict[str, str]:
    """sha256 of every used file (symlinks into the hub cache's blob store are followed)."""
    return {rel: sha256_file(root / rel) for rel in used_files(root)}

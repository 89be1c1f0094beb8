"""`esbundle export --hub-model-id` as the hub tests run it (test material): a hub server on 127.0.0.1
(tests.hub_server) serving tiny models, and the real command line in a subprocess pointed at it with HF_ENDPOINT and
its own HF_HOME. A subprocess, because huggingface_hub reads its endpoint once, at import, and its HTTP client reads
the proxy variables once, when it is made.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bundler.keys import KeyPair
from loader import settings
from tests import models
from tests.hub_server import HubServer, Repo

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "hf_test_token_0123456789"  # the one token tiny-org/private-ner accepts
CLASSIFIER = "tiny-org/bert-classifier"
PRIVATE_NER = "tiny-org/private-ner"
# A developer's own settings would change where the download goes or what it sends: none is inherited.
_NOT_INHERITED = (settings.HUB_ACCESS_TOKEN, "NO_PROXY", "no_proxy", *settings.PROXY_VARIABLES)


def shared_repos(root: Path) -> list[Repo]:
    """A public text classifier and a private NER model (readable with TOKEN only), built under `root`."""
    return [Repo.from_folder(CLASSIFIER, models.bert(root / "cls", labels=["NO", "YES"])),
            Repo.from_folder(PRIVATE_NER, models.bert(root / "ner", "AutoModelForTokenClassification",
                                                      ["O", "B-ORG", "I-ORG"]), token=TOKEN)]


def export(hub: HubServer, hf_home: Path, publisher: KeyPair, out: Path, *args: str,
           env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """`esbundle export --signing-key ... --out OUT --json ARGS` against `hub`, with `env` added."""
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith(("HF_", "ESBUNDLE_")) and k not in _NOT_INHERITED}
    environment.update(HF_ENDPOINT=hub.url, HF_HOME=str(hf_home), PYTHONPATH=str(ROOT), HF_HUB_DISABLE_TELEMETRY="1",
                       **(env or {}))
    command = [sys.executable, "-m", "bundler", "export", "--signing-key",
               str(publisher.private_path), "--out", str(out), "--json", *args]
    return subprocess.run(command, env=environment, capture_output=True, text=True, cwd=cwd, timeout=300)


def files_containing(folder: Path, secret: str) -> list[Path]:
    """Every file under `folder` whose bytes contain `secret`."""
    return [p for p in folder.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]



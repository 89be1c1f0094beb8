"""Start and stop the Elasticsearch stand-in for the benchmark scripts (a real process, as in the tests)."""
from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from benchlib.common import ROOT


class StandIn:
    def __init__(self, data_dir: Path, *extra: str) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log = open(data_dir.parent / f"{data_dir.name}.log", "ab")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen([str(ROOT / "scripts" / "es-standin"), "--port", "0", "--data-dir",
                                         str(data_dir), *extra], stdout=subprocess.PIPE, stderr=self.log, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.startswith("ready "):
            self.process.kill()
            raise SystemExit(f"the stand-in did not start: {line!r}")
        self.url = line.split(" ", 1)[1]

    def request(self, method: str, path: str) -> dict:
        req = urllib.request.Request(self.url + path, method=method)
        with urllib.request.urlopen(req) as response:
            return json.loads(response.read() or b"{}")

    def delete_model(self, model_id: str) -> None:
        try:
            self.request("DELETE", f"/_ml/trained_models/{model_id}?force=true")
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        self.log.close()

"""Hostile media and hostile input found in review: each must end in a clean refusal, never a hang, a crash,
a write outside the destination or a leaked secret."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from bundler.writer.travel import Travel
from loader.format import layout
from tests.conftest import Keys, MakeBundle, RunCli
from tests.test_verify import resign


def esbundle(*args: Any, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESBUNDLE_")}
    return subprocess.run([sys.executable, "-c", "from bundler.cli.esbundle import main; main()", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env={**env, "ESBUNDLE_NO_PROGRESS": "1"})


def test_a_named_pipe_on_the_medium_is_refused_not_waited_on(make_bundle: MakeBundle, keys: Keys) -> None:
    bundle = make_bundle()
    (bundle / layout.ENVELOPE).unlink()
    os.mkfifo(bundle / layout.ENVELOPE)
    result = esbundle("verify", bundle, "--trusted-key", keys.pub, timeout=30)
    assert result.returncode == 5 and "not a regular file" in result.stderr


def test_deeply_nested_or_huge_json_is_a_signature_refusal(make_bundle: MakeBundle, keys: Keys,
                                                           run_cli: RunCli) -> None:
    bundle = make_bundle()
    (bundle / layout.ENVELOPE).write_text("[" * 200_000)
    nested = run_cli("verify", bundle, "--trusted-key", keys.pub)
    assert nested.exit_code == 3 and "nested too deeply" in nested.stderr
    (bundle / layout.ENVELOPE).write_text('{"payload": ' + "9" * 5000 + "}")
    huge = run_cli("verify", bundle, "--trusted-key", keys.pub)
    assert huge.exit_code == 3 and "not acceptable JSON" in huge.stderr


def test_signed_sizes_beyond_the_limits_are_refused(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli) -> None:
    bundle = make_bundle()

    def inflate(obj: dict[str, Any]) -> None:
        config = next(f for f in obj["files"] if f["role"] == "config")
        config["size"] = layout.MAX_CONFIG_BYTES + 1

    resign(bundle, keys, inflate)
    result = run_cli("verify", bundle, "--trusted-key", keys.pub)
    assert result.exit_code == 5 and "exceeds the 1048576 byte limit for a config file" in result.stderr


def test_copy_never_writes_through_a_planted_link(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli,
                                                  tmp_path: Path) -> None:
    bundle = make_bundle()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    dest = tmp_path / "stick"
    dest.mkdir()
    (dest / layout.MANIFEST).write_bytes((bundle / layout.MANIFEST).read_bytes())
    os.symlink(victim, dest / f".{layout.CONFIG}.partial")
    result = run_cli("copy", bundle, dest)
    assert result.exit_code == 2 and "symbolic link" in result.stderr
    assert victim.read_text() == "precious"


def test_copy_refuses_a_non_empty_destination_of_unknown_origin(make_bundle: MakeBundle, run_cli: RunCli,
                                                                tmp_path: Path) -> None:
    dest = tmp_path / "stick"
    (dest / "definition").mkdir(parents=True)
    (dest / "definition" / "part-00000.zst").write_bytes(b"from another bundle's interrupted copy")
    result = run_cli("copy", make_bundle(), dest)
    assert result.exit_code == 2 and "holds no copy of this bundle" in result.stderr


def test_copy_read_back_catches_a_stray_file(make_bundle: MakeBundle, run_cli: RunCli, tmp_path: Path) -> None:
    bundle, dest = make_bundle(), tmp_path / "stick"
    assert run_cli("copy", bundle, dest).exit_code == 0
    (dest / "definition" / "part-00099.zst").write_bytes(b"stray")
    again = run_cli("copy", bundle, dest)
    assert again.exit_code == 4 and "part-00099.zst: file set: extra file" in again.stderr


def test_a_volume_that_is_a_link_is_refused(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli,
                                            tmp_path: Path) -> None:
    bundle = make_bundle(5 * 65536, name="spanning", travel=Travel(volume_size=180 << 10))
    moved = tmp_path / "elsewhere"
    (bundle / "vol002").rename(moved)
    os.symlink(moved, bundle / "vol002")
    result = run_cli("verify", bundle, "--trusted-key", keys.pub)
    assert result.exit_code == 5 and "vol002 is a symbolic link" in result.stderr


def test_a_password_in_the_url_is_never_printed(make_bundle: MakeBundle, keys: Keys, run_cli: RunCli) -> None:
    result = run_cli("load", make_bundle(), "--trusted-key", keys.pub, "--url", "https://elastic:s3cr/et#PW@127.0.0.1:9")
    assert result.exit_code == 7, result.output
    assert "s3cr/et#PW" not in result.output and "et#PW" not in result.output

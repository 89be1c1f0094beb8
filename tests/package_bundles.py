"""Signed package bundles for the repository tests: a package made in the test (tests/packages.py), served by a local
model server (tests/repository_server.py) and exported by the real `run_package_export`, as the connected side does.

Test material only. Making one takes a few seconds (a tiny BERT traced to TorchScript): use module-scoped fixtures.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bundler.elastic.export import PackageExportOptions, run_package_export
from bundler.keys import KeyPair, generate_keypair
from bundler.writer.travel import TravelOptions
from tests.packages import MadePackage, make_package
from tests.repository_server import RepositoryServer


@dataclass(frozen=True)
class PackageBundle:
    package: MadePackage  # the files as the model server published them: the independent reference
    bundle: Path

    @property
    def files(self) -> dict[str, bytes]:
        """Repository file name -> the published bytes."""
        made = self.package
        return {path.name: path.read_bytes() for path in (made.metadata_file, made.vocabulary_file, made.pt)}


def publisher_keys(directory: Path) -> KeyPair:
    return generate_keypair(directory, "publisher")


def export_package(root: Path, name: str, keys: KeyPair, *, padding: int = 0, part_size: int = 1 << 20,
                   volume_size: int | None = None) -> PackageBundle:
    """`root/models` holds the package as published; `root/bundle` the signed bundle of it."""
    package = make_package(root / "models", name, padding=padding)
    server = RepositoryServer(package.directory).start()
    try:
        run_package_export(PackageExportOptions(
            name=name, models_url=server.url, signing_key=keys.private_path, out=root / "bundle",
            part_size=part_size, expires_in_days=None, progress=False,
            travel=TravelOptions(volume_size=volume_size)))
    finally:
        server.stop()
    return PackageBundle(package, root / "bundle")

"""What preflight checks for one of Elastic's packages (a bundle with `manifest.package`), before anything is sent.

A package reaches the cluster only through its model repository (`xpack.ml.model_repository`): the operator puts
the bundle's files there (`esbundle repository install|serve`) and the cluster imports them when asked for the id
`.<name>` (package_import.py). So preflight reads where the cluster will look, whether the package's variant runs
on the ML nodes, and what the cluster already holds under the id.

Facts (Elasticsearch): the ML nodes' platform is `Platforms.platformName(os.name, os.arch)` of each ML node in nodes
info (MlPlatformArchitecturesUtil); a node-scope setting set in elasticsearch.yml shows under `defaults` of
`GET _cluster/settings?include_defaults=true` with the yml's value (RestClusterGetSettingsAction:
`ClusterSettings.diff(cluster settings, node settings)`), and a cluster setting wins over it, transient over
persistent; the setting's default is Elastic's server (MachineLearningPackageLoader); GET trained models shows a
packaged model's `model_package` (TrainedModelConfig.toXContent) with the sha256 and size of the repository's
metadata.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from loader.bundle.verify import Check
from loader.cluster import privileges
from loader.cluster.client import Cluster
from loader.errors import PolicyError
from loader.format.manifest import Manifest, Package
from loader.format.package import ELASTIC_REPOSITORY as DEFAULT_REPOSITORY
from loader.format.package import REPOSITORY_SETTING as MODEL_REPOSITORY

_JVM_ARCHS = {"amd64": "x86_64", "i386": "x86"}
OPTIMISED_SUFFIX = "_linux-x86_64"  # Elastic's optimised variants (ElserModels, ElasticsearchInternalService)
# Where a cluster setting comes from, most binding first (Metadata.settings: transient over persistent over the
# node's own settings, which `include_defaults` lists under `defaults`).
_SOURCES = ("transient", "persistent", "defaults")
INSTALL_HINT = ("put the bundle's files where the cluster reads them: `esbundle repository install BUNDLE --to DIR` "
                "on every master-eligible node (DIR below its config directory) and set `xpack.ml.model_repository: "
                "file://DIR/` in elasticsearch.yml, or `esbundle repository serve BUNDLE` and set it to the URL it "
                "prints; restart the nodes (or set it with PUT _cluster/settings), then run load again")


@dataclass(frozen=True)
class RepositorySetting:
    """The cluster's `xpack.ml.model_repository` and where that value comes from."""

    value: str | None  # None: the cluster does not list the setting
    source: str  # transient | persistent | defaults | absent

    @property
    def is_default(self) -> bool:
        return self.value is not None and self.value.rstrip("/").lower() == DEFAULT_REPOSITORY

    @property
    def origin(self) -> str:
        if self.source == "defaults":
            return "the default" if self.is_default else "set in the nodes' elasticsearch.yml"
        return f"a {self.source} cluster setting"


@dataclass(frozen=True)
class HeldPackage:
    """What the cluster holds under a package's id, as GET trained models shows it."""

    fully_defined: bool
    sha256: str | None
    size: int | None
    repository: str | None

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> HeldPackage:
        record = config.get("model_package")
        record = record if isinstance(record, Mapping) else {}
        size = record.get("size")
        return cls(fully_defined=config.get("fully_defined") is True, sha256=record.get("sha256"),
                   size=size if isinstance(size, int) and not isinstance(size, bool) else None,
                   repository=record.get("model_repository"))

    def differences(self, manifest: Manifest) -> list[str]:
        """How the held package differs from the bundle's definition (the sha256 and size of its `.pt`)."""
        found = []
        if self.sha256 is None and self.size is None:
            found.append("it has no model_package record (not imported from a model repository)")
        if self.sha256 is not None and self.sha256 != manifest.definition.sha256:
            found.append(f"model_package.sha256 is {self.sha256}, the bundle's is {manifest.definition.sha256}")
        if self.size is not None and self.size != manifest.definition.total_length:
            found.append(f"model_package.size is {self.size}, the bundle's is {manifest.definition.total_length}")
        return found

    @property
    def checked_by_cluster(self) -> str:
        """What the cluster itself checked on the route it imported from (ModelImporter)."""
        if (self.repository or "").lower().startswith("file:"):
            return "the cluster checked the sha256 and size of every byte it read"
        return "the cluster checked the size only (its HTTP route), the sha256 is the repository metadata's"


def platform_name(os_name: str, os_arch: str) -> str:
    """Platforms.platformName: `<os>-<arch>` lower-cased, `mac os x` as darwin, `windows*` as windows, the JVM's
    `amd64` as x86_64 and `i386` as x86."""
    system, arch = os_name.lower(), os_arch.lower()
    system = "windows" if system.startswith("windows") else "darwin" if system == "mac os x" else system
    return f"{system}-{_JVM_ARCHS.get(arch, arch)}"


def ml_platforms(nodes: Mapping[str, Any]) -> tuple[set[str], list[str]]:
    """(the platforms of the ML nodes, the ML nodes that report no os name or arch)."""
    found, unknown = set(), []
    for node_id, node in nodes.items():
        if "ml" not in (node.get("roles") or []):
            continue
        os_info = node.get("os") if isinstance(node.get("os"), Mapping) else {}
        if isinstance(os_info.get("name"), str) and isinstance(os_info.get("arch"), str):
            found.add(platform_name(os_info["name"], os_info["arch"]))
        else:
            unknown.append(str(node.get("name", node_id)))
    return found, unknown


def _java_set(values: Iterable[str]) -> str:
    return "[" + ", ".join(sorted(values)) + "]"


def platform_problem(model_id: str, wanted: str | None, platforms: set[str]) -> str | None:
    """MlPlatformArchitecturesUtil.verifyMlNodesAndModelArchitectures, in its words (what `_start` refuses)."""
    if wanted is None or not platforms:
        return None
    if len(platforms) > 1:
        return (f"ML nodes in this cluster have multiple platform architectures, but can only have one for this model "
                f"([{model_id}]); expected [{wanted}]; but was {_java_set(platforms)}")
    if platforms != {wanted}:
        return (f"The model being deployed ([{model_id}]) is platform specific and incompatible with ML nodes in the "
                f"cluster; expected [{wanted}]; but was {_java_set(platforms)}")
    return None


def platform_hint(package: Package) -> str:
    if package.name.endswith(OPTIMISED_SUFFIX):
        portable = package.name.removesuffix(OPTIMISED_SUFFIX)
        return f"export the portable variant instead: esbundle export --elastic-model {portable}"
    return "export the variant built for the ML nodes' platform"


def platform_check(package: Package, nodes: Mapping[str, Any] | None,
                   notes: list[str]) -> tuple[Check, str | None]:
    """The platform check and, when the variant cannot run on the ML nodes, Elasticsearch's refusal text. `nodes`
    is None when the user may not read nodes info (preflight noted it): nothing to compare with."""
    wanted = package.metadata.get("platform_architecture")
    wanted = wanted if isinstance(wanted, str) else None
    if nodes is None:
        return Check("platform", f"package for {wanted or 'any platform'}; ML nodes not readable by this user"), None
    platforms, unknown = ml_platforms(nodes)
    if unknown:
        notes.append(f"ML node(s) {', '.join(sorted(unknown))} report no os name and arch: their platform is not "
                     "checked")
    seen = _java_set(platforms) if platforms else "unknown"
    if wanted is None:
        return Check("platform", f"portable package (no platform_architecture); ML nodes {seen}"), None
    problem = platform_problem(package.model_id, wanted, platforms)
    return Check("platform", f"package for {wanted}; ML nodes {seen}"), problem


def _lookup(section: Any, key: str) -> str | None:
    """A setting in one section of the answer, flat (`flat_settings=true`) or nested."""
    if not isinstance(section, Mapping):
        return None
    if isinstance(section.get(key), str):
        return str(section[key])
    node: Any = section
    for part in key.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node if isinstance(node, str) else None


def read_repository(cluster: Cluster, notes: list[str]) -> RepositorySetting | None:
    """The setting, or None when the user may not read cluster settings (the `monitor` privilege; noted)."""
    answer = privileges.informative(cluster, "settings", "read the cluster's settings",
                                    lambda c: c.cluster.get_settings(include_defaults=True, flat_settings=True), notes)
    if answer is None:
        return None
    for source in _SOURCES:
        value = _lookup(answer.get(source), MODEL_REPOSITORY)
        if value:
            return RepositorySetting(value, source)
    return RepositorySetting(None, "absent")


def repository_check(cluster: Cluster, model_id: str, notes: list[str]) -> tuple[Check, RepositorySetting | None]:
    """Where the cluster will fetch the package; a clear stop when that is Elastic's server on the internet."""
    setting = read_repository(cluster, notes)
    if setting is None:  # noted: the import will show where the cluster looked
        return Check("repository", f"{MODEL_REPOSITORY} not readable by this user"), None
    if setting.value is None:
        raise PolicyError(f"the cluster does not list the setting {MODEL_REPOSITORY}: it has no model repository to "
                          f"import [{model_id}] from", hint="load the package into a cluster with Elastic's "
                          "ml-package-loader (Elasticsearch 8.9 or later)")
    if setting.is_default:
        raise PolicyError(f"the cluster's {MODEL_REPOSITORY} is {setting.value} ({setting.origin}), Elastic's model "
                          f"server on the internet: a cluster in a closed network cannot import [{model_id}] from it",
                          hint=INSTALL_HINT)
    return Check("repository", f"{MODEL_REPOSITORY} = {setting.value} ({setting.origin}); the cluster reads "
                 f"{model_id[1:]}.metadata.json, {model_id[1:]}.pt and the vocabulary there"), setting


def held_check(existing: Mapping[str, Any] | None, manifest: Manifest, model_id: str,
               replace: bool) -> tuple[str, Check]:
    """The plan for the package's id: import it, nothing to do, or (with --replace) delete and import again."""
    if existing is None:
        return "import", Check("model", f"[{model_id}] absent: the cluster will import it from its model repository")
    held = HeldPackage.of(existing)
    differences = held.differences(manifest)
    if not held.fully_defined:
        differences.insert(0, "it is not fully defined (an import failed or is still running)")
    if not differences:
        return "already-loaded", Check("model", f"[{model_id}] already holds this package (sha256 "
                                       f"{manifest.definition.sha256[:16]}, {manifest.definition.total_length} "
                                       "bytes), fully defined")
    if not replace:
        raise PolicyError(f"[{model_id}] is in the cluster and is not this bundle's package: " + "; ".join(differences),
                          outcome="nothing was touched",
                          hint=f"pass --replace to delete it and import this bundle's package, or delete it yourself "
                               f"(DELETE _ml/trained_models/{model_id}) and run load again")
    return "replace", Check("model", f"[{model_id}] is not this bundle's package ({'; '.join(differences)}): will be "
                            "deleted and imported again")


def samples_note(manifest: Manifest) -> list[str]:
    if manifest.samples:
        return []
    return ["the bundle has no samples (recorded without torch, or for a tokenization esbundle does not rebuild): "
            "the smoke test cannot prove the cluster's answers"]

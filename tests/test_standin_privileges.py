"""The stand-in's authorization against Elasticsearch's own texts and answers, and the product's privilege table
against the stand-in's facts where they overlap.

Expectations are written here from Elasticsearch's sources (each with the class it comes from), not read from
either table: AuthorizationDenialMessages.actionDenied for the 403, ClusterPrivilegeResolver for the privileges that
grant an action and their order (sortByAccessLevel), the actions' NAME constants, RBACEngine.checkPrivileges and
HasPrivilegesResponse for `_has_privileges`, HasPrivilegesRequest.validate and ClusterPrivilegeResolver.resolve for
its refusals. The last tests (which, unlike the stand-in, may read the product) fail on any disagreement between
loader/cluster/privileges.py and tests/standin/authz.py.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from loader.cluster import denials, privileges
from tests.standin import authz
from tests.standin.fixture import StandIn, failed_start

ML = "/_ml/trained_models"
NOBODY = "nobody:pw:none"  # a role with the `none` privilege: every action below is denied


def denial(action: str, user: str, roles: str, grantors: str) -> dict[str, Any]:
    """AuthorizationDenialMessages.Default.actionDenied, as ElasticsearchSecurityException renders (403)."""
    reason = (f"action [{action}] is unauthorized for user [{user}] with effective roles [{roles}], "
              f"this action is granted by the cluster privileges [{grantors}]")
    cause = {"type": "security_exception", "reason": reason}
    return {"error": {"root_cause": [cause], **cause}, "status": 403}


def as_user(server: StandIn, user: str, method: str, path: str, body: Any = None) -> Any:
    """One request as `user` (`NAME:PASSWORD`, or the `--user` text itself)."""
    import base64

    name, password, _ = authz.split_user(user)
    token = base64.b64encode(f"{name}:{password}".encode()).decode()
    return server.http(method, path, body=body, headers={"Authorization": f"Basic {token}"})


# (method, path, Elasticsearch release, the action (its class's NAME), the privileges granting it, in
# ClusterPrivilegeResolver's access-level order: fewer implied privileges first, then by name)
DENIALS = [
    ("GET", "/", "9.2.0", "cluster:monitor/main", "monitor,manage,all"),  # MainRestPlugin.MAIN_ACTION
    ("GET", "/_license", "9.2.0", "cluster:monitor/xpack/license/get", "monitor,manage,all"),  # GetLicenseAction
    ("GET", "/_nodes", "9.2.0", "cluster:monitor/nodes/info", "monitor,manage,all"),  # TransportNodesInfoAction
    ("GET", "/_cluster/settings", "9.2.0", "cluster:monitor/settings", "monitor,manage,all"),  # ClusterGetSettings
    # Before 8.3, RestClusterGetSettingsAction read the cluster state (ClusterStateAction)
    ("GET", "/_cluster/settings", "8.2.3", "cluster:monitor/state",
     "read_ccr,transport_client,manage_ccr,monitor,manage,all"),
    ("GET", f"{ML}/m", "9.2.0", "cluster:monitor/xpack/ml/inference/get", "monitor_ml,manage_ml,monitor,manage,all"),
    ("PUT", f"{ML}/m", "9.2.0", "cluster:admin/xpack/ml/inference/put", "manage_ml,manage,all"),
    ("PUT", f"{ML}/m/vocabulary", "9.2.0", "cluster:admin/xpack/ml/trained_models/vocabulary/put",
     "manage_ml,manage,all"),
    ("PUT", f"{ML}/m/definition/0", "9.2.0", "cluster:admin/xpack/ml/trained_models/part/put", "manage_ml,manage,all"),
    ("DELETE", f"{ML}/m", "9.2.0", "cluster:admin/xpack/ml/inference/delete", "manage_ml,manage,all"),
    ("GET", f"{ML}/m/_stats", "9.2.0", "cluster:monitor/xpack/ml/inference/stats/get",
     "monitor_ml,manage_ml,monitor,manage,all"),
    ("POST", f"{ML}/m/_infer", "9.2.0", "cluster:monitor/xpack/ml/inference/infer",
     "monitor_ml,manage_ml,monitor,manage,all"),  # InferModelAction.EXTERNAL_NAME
    # manage_inference grants _start by name (8.14+), and implies as many privileges as manage_ml: by name
    ("POST", f"{ML}/m/deployment/_start", "9.2.0", "cluster:admin/xpack/ml/trained_models/deployment/start",
     "manage_inference,manage_ml,manage,all"),
    ("POST", f"{ML}/m/deployment/_start", "8.13.4", "cluster:admin/xpack/ml/trained_models/deployment/start",
     "manage_ml,manage,all"),
    ("POST", f"{ML}/m/deployment/_stop", "9.2.0", "cluster:admin/xpack/ml/trained_models/deployment/stop",
     "manage_inference,manage_ml,manage,all"),
    ("GET", "/_inference/e", "9.2.0", "cluster:monitor/xpack/inference/get",
     "monitor_inference,manage_inference,monitor,manage,all"),
    ("GET", "/_inference/e", "8.13.4", "cluster:monitor/xpack/inference/get", "monitor,manage,all"),
    ("PUT", "/_inference/text_embedding/e", "9.2.0", "cluster:admin/xpack/inference/put",
     "manage_inference,manage,all"),
    ("PUT", "/_inference/text_embedding/e", "8.13.4", "cluster:admin/xpack/inference/put", "manage,all"),
    ("POST", "/_inference/text_embedding/e", "9.2.0", "cluster:monitor/xpack/inference",
     "monitor_inference,manage_inference,monitor,manage,all"),  # InferenceAction.NAME
    ("DELETE", "/_inference/e", "9.2.0", "cluster:admin/xpack/inference/delete", "manage_inference,manage,all"),
]


def since_14(version: str) -> bool:
    return tuple(int(n) for n in version.split(".")) >= authz.INFERENCE_PRIVILEGES_SINCE


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.standin.fixture import start_standin

    root = tmp_path_factory.mktemp("privileges")
    started: dict[str, StandIn] = {}

    def get(version: str) -> StandIn:
        if version not in started:
            started[version] = start_standin(root / version, es_version=version,
                                             user=["elastic:changeme", NOBODY, "bob:pw:monitor_ml,cluster:monitor/main",
                                                   *(["ivy:pw:manage_inference"] if since_14(version) else [])])
        return started[version]

    yield get
    for server in started.values():
        server.kill()


@pytest.mark.parametrize(("method", "path", "version", "action", "grantors"), DENIALS)
def test_a_call_outside_the_role_is_elasticsearchs_403(method: str, path: str, version: str, action: str,
                                                       grantors: str, servers: Callable[[str], StandIn]) -> None:
    answer = as_user(servers(version), NOBODY, method, path)
    assert answer.status == 403
    assert answer.json() == denial(action, "nobody", "nobody_role", grantors)
    assert answer.headers["X-Elastic-Product"] == "Elasticsearch"


def test_a_call_inside_the_role_is_served(servers: Callable[[str], StandIn]) -> None:
    server = servers("9.2.0")
    user = "bob:pw:monitor_ml,cluster:monitor/main"
    assert as_user(server, user, "GET", "/").status == 200  # the action name `cluster:monitor/main` as a privilege
    assert as_user(server, user, "GET", f"{ML}/_stats").status == 200
    refused = as_user(server, user, "GET", "/_license")
    assert refused.json() == denial("cluster:monitor/xpack/license/get", "bob", "bob_role", "monitor,manage,all")


def test_has_privileges_answers_like_elasticsearch(servers: Callable[[str], StandIn]) -> None:
    server = servers("9.2.0")
    asked = ["monitor_ml", "manage_ml", "monitor", "cluster:monitor/xpack/ml/inference/get", "cluster:monitor/main",
             "cluster:monitor/xpack/ml/*", "cluster:admin/xpack/ml/trained_models/part/put"]
    answer = as_user(server, "bob:pw", "POST", "/_security/user/_has_privileges", {"cluster": asked})
    assert answer.status == 200
    assert answer.json() == {"username": "bob", "has_all_requested": False, "index": {}, "application": {},
                             "cluster": {"monitor_ml": True, "manage_ml": False, "monitor": False,
                                         "cluster:monitor/xpack/ml/inference/get": True, "cluster:monitor/main": True,
                                         "cluster:monitor/xpack/ml/*": True,
                                         "cluster:admin/xpack/ml/trained_models/part/put": False}}
    # Any user may ask about themselves (RBACEngine's same-user rule), a role of `none` included; GET too.
    nobody = as_user(server, NOBODY, "GET", "/_security/user/nobody/_has_privileges", {"cluster": ["none"]})
    assert nobody.json() == {"username": "nobody", "has_all_requested": True, "cluster": {"none": True},
                             "index": {}, "application": {}}
    everything = as_user(server, "elastic:changeme", "POST", "/_security/user/_has_privileges",
                         {"cluster": ["all", "manage_ml"], "index": [{"names": ["a"], "privileges": ["read"]}]})
    assert everything.json() == {"username": "elastic", "has_all_requested": True, "application": {},
                                 "cluster": {"all": True, "manage_ml": True}, "index": {"a": {"read": True}}}


def test_an_action_name_is_asked_as_a_pattern(servers: Callable[[str], StandIn]) -> None:
    """ClusterPrivilegeResolver.resolve turns an action name into `name*`: `manage_inference`, which grants
    `_start` by its bare name, does not imply it. The product asks the privilege by name too (exact_grants)."""
    start = "cluster:admin/xpack/ml/trained_models/deployment/start"
    answer = as_user(servers("9.2.0"), "ivy:pw", "POST", "/_security/user/_has_privileges",
                     {"cluster": [start, "manage_inference"]})
    assert answer.json()["cluster"] == {start: False, "manage_inference": True}
    assert as_user(servers("9.2.0"), "ivy:pw:manage_inference", "POST", f"{ML}/m/deployment/_start").status != 403


def test_has_privileges_refusals(servers: Callable[[str], StandIn], standin: Callable[..., StandIn]) -> None:
    server = servers("9.2.0")
    empty = as_user(server, "bob:pw", "POST", "/_security/user/_has_privileges", {"cluster": []})
    assert empty.status == 400 and empty.json()["error"]["type"] == "action_request_validation_exception"
    assert empty.json()["error"]["reason"] == "Validation Failed: 1: must specify at least one privilege;"
    unknown = as_user(server, "bob:pw", "POST", "/_security/user/_has_privileges", {"cluster": ["manage_models"]})
    assert unknown.status == 400 and unknown.json()["error"]["type"] == "illegal_argument_exception"
    assert unknown.json()["error"]["reason"].startswith(
        "unknown cluster privilege [manage_models]. a privilege must be either one of the predefined cluster "
        "privilege names [")
    assert unknown.json()["error"]["reason"].endswith("] or a pattern over one of the available cluster actions")
    # Before 8.14 there is no manage_inference
    old = as_user(servers("8.13.4"), "bob:pw", "POST", "/_security/user/_has_privileges",
                  {"cluster": ["manage_inference"]})
    assert old.status == 400 and "unknown cluster privilege [manage_inference]" in old.json()["error"]["reason"]
    # Security off (no user, no API key): the security plugin registers no handler
    open_cluster = standin()
    answer = open_cluster.http("POST", "/_security/user/_has_privileges", {"cluster": ["monitor"]})
    assert answer.status == 400
    assert answer.json() == {"error": "no handler found for uri [/_security/user/_has_privileges] and method [POST]",
                             "status": 400}


def test_users_on_the_command_line(tmp_path: Path, standin: Callable[..., StandIn]) -> None:
    # NAME:PASSWORD is a superuser, as before; a password may hold `:`, `@`, `/`, `#`, `%`
    server = standin(user=["elastic:p:a@s/s#%w", "viewer:pw:monitor"])
    assert as_user(server, "elastic:p:a@s/s#%w", "PUT", "/_inference/text_embedding/e", {}).status != 403
    assert as_user(server, "viewer:pw", "GET", "/_license").status == 200
    assert as_user(server, "viewer:wrong", "GET", "/").status == 401
    # A privilege the release does not know: Elasticsearch would refuse the role; the stand-in does not start
    failed = failed_start(tmp_path / "old", es_version="8.13.4", user="ivy:pw:manage_inference")
    assert failed.status == 2 and "unknown cluster privilege [manage_inference]" in failed.stderr


# --- the product's table against the stand-in's facts -------------------------------------------------------------

def _endpoint(request: str) -> tuple[str, str]:
    """A product request (`PUT _ml/trained_models/{id}/definition/<part>`) as a concrete method and path."""
    method, _, path = request.partition(" ")
    path = path.split("?")[0].format(id="m", inference_id="e").replace("<part>", "0")
    return method, "/" + path.lstrip("/").replace("<task_type>", "text_embedding")


@pytest.mark.parametrize("key", sorted(privileges.CALLS))
@pytest.mark.parametrize("version", [(9, 2, 0), (8, 13, 4), (8, 2, 3)])
def test_the_products_table_agrees_with_the_standins_facts(key: str, version: tuple[int, int, int]) -> None:
    call = privileges.CALLS[key]
    method, path = _endpoint(call.request)
    action = authz.action_for(method, path, version)
    if key == "has_privileges":  # not authorized by action: every user may ask about themselves
        assert action is None and call.action == authz.HAS_PRIVILEGES and call.privilege == ""
        return
    grantors = authz.granted_by(action or "", version)
    named = call.privilege_on(version)
    assert named in grantors, f"{call.request}: {named} does not grant {action} ({grantors})"
    if key == "settings" and version < (8, 3, 0):
        # The product names the 8.3+ action. Before, the cluster state: also granted by transport_client, read_ccr
        # and manage_ccr, which hold nothing else a load reads; `monitor` holds both actions.
        assert action == "cluster:monitor/state"
        return
    assert action == call.action, f"{call.request}: product {call.action}, stand-in {action}"
    # The product names the least privilege: only privileges it knows grant the bare name come before it
    before = grantors[:grantors.index(named)]
    assert set(before) <= set(call.exact_grants), f"{call.request}: {before} come before {named}"
    for exact in call.exact_grants:
        if exact in authz.known(version):
            holder = [authz.resolve(exact, version)]
            assert holder[0].grants(action) and not authz.implies(holder, [authz.resolve(action, version)])


def test_the_products_hint_reads_elasticsearchs_denial(servers: Callable[[str], StandIn]) -> None:
    reason = as_user(servers("9.2.0"), NOBODY, "GET", "/").json()["error"]["reason"]
    assert denials.denial_hint(reason) == f"grant the cluster privilege [monitor]; {denials.ROLE_HINT}"
    assert denials.denial_hint("current license is non-compliant for [ml]") is None


def test_the_products_implications_are_elasticsearchs() -> None:
    named = authz.known((9, 2, 0))
    for holder, implied in privileges.IMPLIES.items():
        for other in implied:
            assert authz.implies([named[holder]], [named[other]]), f"{holder} does not imply {other}"
    # and none is missing among the privileges the product names
    names = {c.privilege for c in privileges.CALLS.values()} - {""}
    for holder in names:
        for other in names - {holder}:
            if authz.implies([named[holder]], [named[other]]):
                assert other in privileges.IMPLIES.get(holder, set()), f"{holder} implies {other}"
    assert privileges.INFERENCE_PRIVILEGES_SINCE == authz.INFERENCE_PRIVILEGES_SINCE


def test_each_printed_role_grants_every_call_of_its_load() -> None:
    for needs in (privileges.LoadNeeds(), privileges.LoadNeeds(start=True),
                  privileges.LoadNeeds(start=True, endpoint=True), privileges.LoadNeeds(replace=True, start=True),
                  privileges.LoadNeeds(dry_run=True)):
        body, _ = privileges.load_role(needs)
        held = [authz.resolve(p, (9, 2, 0)) for p in body["cluster"]]
        for package, action in ((False, "create"), (False, "replace" if needs.replace else "resume"),
                                (True, "import")):
            for key in privileges.load_calls(needs, package=package, action=action):
                call = privileges.CALLS[key]
                assert not call.privilege or any(p.grants(call.action) for p in held), (needs, key, body)

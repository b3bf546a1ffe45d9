"""The plain-HTTP admin endpoint: flip faults, read state, issue and revoke API keys."""

from __future__ import annotations

import json

from sim_helpers import XRFKEY, call, qrs_headers

from exporter.sim import Simulator


def admin(sim: Simulator, path: str) -> str:
    return f"http://127.0.0.1:{sim.ports.admin}{path}"


async def test_admin_post_fault_flips_the_service(sim, sim_mtls):
    """POST /faults sets a fault that the repository then applies."""
    body = {"service": "repository", "kind": "status", "status": 500}
    status, _, text = await call("POST", admin(sim, "/faults"), False, json=body)
    assert status == 201
    assert json.loads(text)["kind"] == "status"
    url = sim.url("repository", f"/qrs/about?xrfkey={XRFKEY}")
    assert (await call("GET", url, sim_mtls, qrs_headers()))[0] == 500


async def test_admin_delete_faults_of_one_service(sim):
    """DELETE /faults/{service} clears that service's faults only."""
    sim.faults.set("repository", "hang")
    sim.faults.set("cloud", "hang")
    status, _, text = await call("DELETE", admin(sim, "/faults/repository"), False)
    assert status == 200
    snapshot = json.loads(text)
    assert snapshot["repository"] == []
    assert snapshot["cloud"] != []


async def test_admin_delete_all_faults(sim):
    """DELETE /faults clears every fault."""
    sim.faults.set("engine", "engine_no_connected")
    status, _, _ = await call("DELETE", admin(sim, "/faults"), False)
    assert status == 200
    assert all(not faults for faults in sim.faults.snapshot().values())


async def test_admin_rejects_a_bad_fault(sim):
    """POST /faults with an unknown kind answers 400 with the reason."""
    body = {"service": "repository", "kind": "explode"}
    status, _, text = await call("POST", admin(sim, "/faults"), False, json=body)
    assert status == 400
    assert "unknown fault kind" in text


async def test_admin_state_shows_ports_and_session_counts(sim):
    """GET /state shows the ports, the faults and proxy session counts per user."""
    sim.proxy_sessions.create("jwt", "LAB", "monitor")
    sim.proxy_sessions.create("jwt", "LAB", "monitor")
    status, _, text = await call("GET", admin(sim, "/state"), False)
    assert status == 200
    state = json.loads(text)
    assert state["ports"]["repository"] == sim.ports.repository
    assert state["proxy_sessions"] == [
        {"vp": "jwt", "userDirectory": "LAB", "userId": "monitor", "count": 2}
    ]


async def test_admin_issues_and_revokes_api_keys(sim, sim_tls):
    """POST /apikeys issues a working key; POST /apikeys/{jti}/revoke makes it 401."""
    status, _, text = await call("POST", admin(sim, "/apikeys"), False, json={"expires_in": 600})
    assert status == 201
    issued = json.loads(text)
    headers = {"Authorization": f"Bearer {issued['key']}"}
    me = sim.url("cloud", "/api/v1/users/me")
    assert (await call("GET", me, sim_tls, headers))[0] == 200
    revoke = admin(sim, f"/apikeys/{issued['jti']}/revoke")
    assert (await call("POST", revoke, False))[0] == 200
    assert (await call("GET", me, sim_tls, headers))[0] == 401


async def test_admin_get_faults_lists_active_faults(sim):
    """GET /faults lists the active faults by service, with their parameters."""
    sim.faults.set("repository", "delay", seconds=2, times=3)
    status, _, text = await call("GET", admin(sim, "/faults"), False)
    assert status == 200
    assert json.loads(text)["repository"] == [{"kind": "delay", "remaining": 3, "seconds": 2.0}]


async def admin_call(sim: Simulator, method: str, path: str, body=None) -> tuple[int, object]:
    status, _, text = await call(method, admin(sim, path), False, json=body)
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


async def test_admin_site_nodes_stop_start_add_remove(site, site_mtls):
    """/site/nodes: list, stop and start a node, add and remove one."""
    status, nodes = await admin_call(site, "GET", "/site/nodes")
    assert status == 200
    assert [n["hostName"] for n in nodes] == list(site.hosts)
    status, node = await admin_call(site, "POST", "/site/nodes/rim1/stop")
    assert (status, node["running"], node["listeners"]) == (200, False, [])
    assert node["services"]["engine"]["state"] == "no_communication"
    status, node = await admin_call(site, "POST", "/site/nodes/rim1/start")
    assert (status, node["running"]) == (200, True)
    body = {"name": "rim3", "proxy": False, "purpose": "production"}
    status, node = await admin_call(site, "POST", "/site/nodes", body)
    assert (status, node["hostName"], node["address"]) == (201, "rim3.qliksim.test", "127.0.0.5")
    assert node["listeners"] == ["repository", "engine"]
    status, _ = await admin_call(site, "DELETE", "/site/nodes/rim3")
    assert status == 200
    assert "rim3.qliksim.test" not in site.hosts


async def test_admin_site_node_errors(site):
    """Unknown node 404; unknown node field, bad purpose or second central 400."""
    assert (await admin_call(site, "POST", "/site/nodes/nope/stop"))[0] == 404
    for body in ({"name": "x", "colour": "red"}, {"name": "x", "purpose": "test"}, {}):
        status, text = await admin_call(site, "POST", "/site/nodes", body)
        assert status == 400, text
    assert (await admin_call(site, "DELETE", "/site/nodes/central"))[0] == 400


async def test_admin_service_state_and_listener(site):
    """/services/{service}: set a reported state; /stop and /start its listener."""
    body = {"state": "initializing", "timestamp": "2024-05-01T12:00:00Z"}
    status, node = await admin_call(site, "POST", "/site/nodes/rim2/services/scheduler", body)
    assert status == 200
    assert node["services"]["scheduler"] == {
        "state": "initializing",
        "timestamp": "2024-05-01T12:00:00.000Z",
    }
    status, node = await admin_call(site, "POST", "/site/nodes/rim2/services/engine/stop")
    assert "engine" not in node["listeners"]
    status, node = await admin_call(site, "POST", "/site/nodes/rim2/services/engine/start")
    assert "engine" in node["listeners"]
    bad = await admin_call(site, "POST", "/site/nodes/rim2/services/engine", {"state": "up"})
    assert bad[0] == 400


async def test_admin_certificate_and_versions(site):
    """/certificate regenerates and restores a node certificate; /versions sets builds."""
    status, node = await admin_call(
        site, "POST", "/site/nodes/rim1/certificate", {"kind": "expired"}
    )
    assert (status, node["certificate"]) == (200, "expired")
    status, node = await admin_call(site, "DELETE", "/site/nodes/rim1/certificate")
    assert node["certificate"] == "original"
    assert (await admin_call(site, "POST", "/site/nodes/rim1/certificate", {"kind": "x"}))[0] == 400
    await admin_call(site, "POST", "/site/nodes/rim1/versions", {"buildVersion": "30.4.0.0"})
    assert site.node("rim1").build_version == "30.4.0.0"


async def test_admin_node_fault(site):
    """POST /faults with a node faults that node only; DELETE /faults clears it too."""
    body = {"service": "engine", "kind": "status", "status": 502, "node": "rim1"}
    status, reply = await admin_call(site, "POST", "/faults", body)
    assert (status, reply["node"]) == (201, "rim1")
    assert site.node("rim1").faults.snapshot()["engine"][0]["status"] == 502
    assert site.faults.snapshot()["engine"] == []
    await admin_call(site, "DELETE", "/faults")
    assert site.node("rim1").faults.snapshot()["engine"] == []


async def test_admin_site_license(sim):
    """/site/license: variant, end date, expire, exhaust and one access type."""
    status, lic = await admin_call(
        sim, "POST", "/site/license", {"variant": "lef", "validTo": "2031-01-31"}
    )
    assert (status, lic["variant"], lic["validTo"][:10]) == (200, "lef", "2031-01-31")
    status, lic = await admin_call(sim, "POST", "/site/license/expire")
    assert lic["isExpired"] is True
    status, lic = await admin_call(sim, "POST", "/site/license/exhaust")
    assert lic["professional"]["available"] == 0
    body = {"total": 7, "allocated": 2}
    status, lic = await admin_call(sim, "POST", "/site/license/access/analyzer", body)
    assert lic["analyzer"]["available"] == 5
    status, lic = await admin_call(sim, "POST", "/site/license", {"variant": "perpetual"})
    assert (lic["validTo"], lic["isExpired"]) == (None, False)
    assert (await admin_call(sim, "POST", "/site/license", {"validTo": "soon"}))[0] == 400
    assert (await admin_call(sim, "POST", "/site/license/access/tokens", {"total": 1}))[0] == 400


async def test_admin_state_never_shows_licence_or_client_secrets(sim):
    """GET /state shows nodes, licences and clients but no serial, key or client secret."""
    _, created = await admin_call(sim, "POST", "/cloud/oauth/clients", {"name": "bot"})
    _, _, text = await call("GET", admin(sim, "/state"), False)
    assert created["client_secret"] not in text
    for secret in [*sim.license.material, *sim.cloud.license.material]:
        assert secret not in text
    state = json.loads(text)
    assert state["nodes"][0]["hostName"] == sim.host
    assert state["oauth_clients"][0]["name"] == "bot"


async def test_admin_oauth_clients(sim, sim_tls):
    """/cloud/oauth/clients: create (secret once), rate-limit, forbid, revoke, token lifetime."""
    status, created = await admin_call(sim, "POST", "/cloud/oauth/clients", {"name": "bot"})
    assert status == 201
    client_id, secret = created["client_id"], created["client_secret"]
    token_url = sim.url("cloud", "/oauth/token")
    body = {"client_id": client_id, "client_secret": secret, "grant_type": "client_credentials"}
    await admin_call(sim, "POST", "/cloud/oauth/token-lifetime", {"seconds": 600})
    status, _, text = await call("POST", token_url, sim_tls, json=body)
    assert (status, json.loads(text)["expires_in"]) == (200, 600)
    await admin_call(
        sim, "POST", f"/cloud/oauth/clients/{client_id}/rate-limit", {"limit": 0, "window": 30}
    )
    assert (await call("POST", token_url, sim_tls, json=body))[0] == 429
    await admin_call(sim, "POST", f"/cloud/oauth/clients/{client_id}/rate-limit", {"limit": None})
    await admin_call(sim, "POST", f"/cloud/oauth/clients/{client_id}/forbid", {"forbidden": True})
    assert (await call("POST", token_url, sim_tls, json=body))[0] == 403
    await admin_call(sim, "POST", f"/cloud/oauth/clients/{client_id}/forbid", {"forbidden": False})
    status, reply = await admin_call(sim, "POST", f"/cloud/oauth/clients/{client_id}/revoke")
    assert reply["revoked"] is True
    assert (await call("POST", token_url, sim_tls, json=body))[0] == 401
    assert (await admin_call(sim, "POST", "/cloud/oauth/clients/nope/revoke"))[0] == 404


async def test_admin_cloud_license(sim):
    """/cloud/license: end date, status, expire, exhaust, one allotment."""
    status, lic = await admin_call(sim, "POST", "/cloud/license", {"validTo": "2030-06-30"})
    assert (status, lic["valid"].split("/")[1]) == (200, "2030-06-30")
    _, lic = await admin_call(sim, "POST", "/cloud/license", {"status": "Blacklisted"})
    assert lic["status"] == "Blacklisted"
    _, lic = await admin_call(sim, "POST", "/cloud/license/expire")
    assert lic["status"] == "Expired"
    _, lic = await admin_call(
        sim, "POST", "/cloud/license/allotments/professional", {"units": 3, "unitsUsed": 1}
    )
    assert {"name": "professional", "usageClass": "assigned", "units": 3, "unitsUsed": 1} in lic[
        "allotments"
    ]
    _, lic = await admin_call(sim, "POST", "/cloud/license/exhaust")
    assert all(a["units"] == a["unitsUsed"] for a in lic["allotments"])
    assert (await admin_call(sim, "POST", "/cloud/license", {"status": "Great"}))[0] == 400


async def test_admin_issues_non_admin_api_keys(sim, sim_tls):
    """POST /apikeys {"admin": false}: a key whose user gets 403 on the licence endpoints."""
    _, issued = await admin_call(sim, "POST", "/apikeys", {"sub": "viewer", "admin": False})
    headers = {"Authorization": f"Bearer {issued['key']}"}
    assert (await call("GET", sim.url("cloud", "/api/v1/licenses/status"), sim_tls, headers))[
        0
    ] == 403


async def test_admin_clearing_cloud_faults_keeps_node_faults(site):
    """DELETE /faults/cloud leaves a node's own faults in place."""
    site.node("rim1").faults.set("engine", "hang")
    site.faults.set("cloud", "hang")
    assert (await admin_call(site, "DELETE", "/faults/cloud"))[0] == 200
    assert site.faults.snapshot()["cloud"] == []
    assert site.node("rim1").faults.snapshot()["engine"] != []

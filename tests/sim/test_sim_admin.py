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

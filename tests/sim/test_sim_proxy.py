"""The QPS API (4243): sessions and users per virtual proxy, PascalCase, xrfkey enforced."""

from __future__ import annotations

import json

from sim_helpers import XRFKEY, XSRF_BODY, call

HDR = {"X-Qlik-Xrfkey": XRFKEY}


async def test_session_list_is_pascal_case_and_reflects_live_sessions(sim, sim_mtls):
    """GET /qps/{vp}/session lists the live proxy sessions as PascalCase objects."""
    s = sim.proxy_sessions.create("hdr", "LAB", "goran", "Göran S", ({"email": "g@x"},))
    url = sim.url("proxy", f"/qps/hdr/session?xrfkey={XRFKEY}")
    status, _, body = await call("GET", url, sim_mtls, HDR)
    assert status == 200
    assert json.loads(body) == [
        {
            "UserDirectory": "LAB",
            "UserId": "goran",
            "UserName": "Göran S",
            "Attributes": [{"email": "g@x"}],
            "SessionId": s.session_id,
        }
    ]


async def test_session_list_without_vp_is_the_default_proxy(sim, sim_mtls):
    """GET /qps/session (no vp segment) lists only the default virtual proxy's sessions."""
    sim.proxy_sessions.create("hdr", "LAB", "goran")
    sim.proxy_sessions.create("", "LAB", "anna")
    status, _, body = await call(
        "GET", sim.url("proxy", f"/qps/session?xrfkey={XRFKEY}"), sim_mtls, HDR
    )
    assert status == 200
    assert [s["UserId"] for s in json.loads(body)] == ["anna"]


async def test_user_sessions_get_and_delete(sim, sim_mtls):
    """GET /qps/{vp}/user/{dir}/{id} lists a user's sessions and DELETE ends them."""
    sim.proxy_sessions.create("jwt", "LAB", "goran")
    sim.proxy_sessions.create("jwt", "LAB", "goran")
    url = sim.url("proxy", f"/qps/jwt/user/lab/GORAN?xrfkey={XRFKEY}")
    status, _, body = await call("GET", url, sim_mtls, HDR)
    assert (status, len(json.loads(body))) == (200, 2)
    status, _, _ = await call("DELETE", url, sim_mtls, HDR)
    assert status == 200
    assert sim.proxy_session_count("LAB", "goran", vp="jwt") == 0


async def test_qps_requires_xrfkey(sim, sim_mtls):
    """A QPS call without an xrfkey gets 403 with the XSRF text."""
    status, _, body = await call("GET", sim.url("proxy", "/qps/session"), sim_mtls, {})
    assert (status, body) == (403, XSRF_BODY)


async def test_unknown_virtual_proxy_gets_404(sim, sim_mtls):
    """A vp segment that names no virtual proxy gets 404."""
    url = sim.url("proxy", f"/qps/nosuchvp/session?xrfkey={XRFKEY}")
    status, _, _ = await call("GET", url, sim_mtls, HDR)
    assert status == 404


async def test_ticket_is_issued_for_a_user(sim, sim_mtls):
    """POST /qps/ticket answers 201 echoing the user plus a Ticket."""
    url = sim.url("proxy", f"/qps/ticket?xrfkey={XRFKEY}")
    body = {"UserDirectory": "LAB", "UserId": "goran", "Attributes": []}
    status, _, text = await call("POST", url, sim_mtls, HDR, json=body)
    assert status == 201
    reply = json.loads(text)
    assert reply["UserId"] == "goran"
    assert len(reply["Ticket"]) == 16


async def test_ticket_with_backslash_in_user_is_refused(sim, sim_mtls):
    """A ticket request whose UserId contains a backslash gets 400."""
    url = sim.url("proxy", f"/qps/ticket?xrfkey={XRFKEY}")
    body = {"UserDirectory": "LAB", "UserId": "LAB\\goran"}
    status, _, _ = await call("POST", url, sim_mtls, HDR, json=body)
    assert status == 400

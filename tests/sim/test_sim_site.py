"""The multi-node site: node addresses and names, QRS site endpoints, node and service switches."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import socket
import ssl

import aiohttp
import pytest
from cryptography import x509
from sim_helpers import call, qps_url, qrs_headers, qrs_url, site_call

from exporter.sim import NodeSpec, Simulator
from exporter.sim.site import SERVICE_STATES, SERVICE_TYPES, SiteResolver

NODE_FIELDS = {
    "id",
    "name",
    "hostName",
    "isCentral",
    "nodePurpose",
    "engineEnabled",
    "proxyEnabled",
    "schedulerEnabled",
    "printingEnabled",
    "schemaPath",
}


async def qrs(sim: Simulator, ctx: ssl.SSLContext, path: str, node: str | None = None, query=""):
    status, _, body = await site_call(
        sim, "GET", qrs_url(sim, path, node, query), ctx, qrs_headers()
    )
    assert status == 200, body
    return json.loads(body)


async def refused(sim: Simulator, url: str, ctx: ssl.SSLContext) -> bool:
    try:
        await site_call(sim, "GET", url, ctx, qrs_headers())
    except aiohttp.ClientConnectorError as exc:
        return isinstance(exc.os_error, ConnectionRefusedError)
    return False


def states(entries: list[dict], node: str) -> dict[str, str]:
    return {
        SERVICE_TYPES[e["serviceType"]]: SERVICE_STATES[e["serviceState"]]
        for e in entries
        if e["serverNodeConfiguration"]["name"] == node
    }


def test_default_site_names_addresses_and_flags(tmp_path):
    """nodes=3: central + two rims on 127.0.0.2-4 under qliksim.test, with distinct roles."""
    sim = Simulator(tmp_path, nodes=3)
    assert sim.hosts == {
        "central.qliksim.test": "127.0.0.2",
        "rim1.qliksim.test": "127.0.0.3",
        "rim2.qliksim.test": "127.0.0.4",
    }
    assert sim.host == "central.qliksim.test"
    assert sim.cloud_host == "localhost"
    rim1, rim2 = sim.node("rim1"), sim.node("RIM2.qliksim.test")
    assert (rim1.engine_enabled, rim1.proxy_enabled, rim1.scheduler_enabled) == (True, True, False)
    assert (rim2.engine_enabled, rim2.proxy_enabled, rim2.scheduler_enabled) == (True, False, True)
    assert [n.purpose for n in sim.nodes] == ["both", "production", "development"]


@pytest.mark.parametrize(
    ("nodes", "match"),
    [
        ([NodeSpec("a"), NodeSpec("b")], "exactly one central"),
        ([NodeSpec("a", central=True), NodeSpec("a")], "unique"),
        (0, "at least one"),
    ],
)
def test_bad_site_definitions_are_refused(tmp_path, nodes, match):
    """A site without exactly one central node, or with duplicate names, is refused."""
    with pytest.raises(ValueError, match=match):
        Simulator(tmp_path, nodes=nodes)


def test_node_address_must_be_loopback():
    """A node address outside 127.0.0.0/8 is refused (the simulator never leaves loopback)."""
    with pytest.raises(ValueError, match="loopback"):
        NodeSpec("x", address="10.0.0.5")


async def test_every_node_listens_on_its_address_with_the_same_ports(site, site_mtls):
    """Each node answers /qrs/about on its own address; the ports are the same everywhere."""
    for node in site.nodes:
        about = await qrs(site, site_mtls, "/qrs/about", node.name)
        assert about["nodeType"] == (1 if node.is_central else 2)
        url = f"https://{node.address}:{site.ports.repository}/qrs/about?xrfkey=abcdefghijklmnop"
        status, _, _ = await call("GET", url, site_mtls, qrs_headers())
        assert status == 200  # by address too: the SAN carries it


async def test_node_certificates_name_the_host_and_address(site, site_mtls):
    """Every node's server certificate has its host name and address in the SAN."""
    for node in site.nodes:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(
                node.address, site.ports.repository, ssl=site_mtls, server_hostname=node.host_name
            ),
            5,
        )
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.close()
        san = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        )
        assert san.value.get_values_for_type(x509.DNSName) == [node.host_name]
        assert san.value.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address(node.address)]


async def test_node_certificate_does_not_cover_another_node(site, site_mtls):
    """Asking rim1's address for central's name fails the hostname check (per-node certs)."""
    rim1 = site.node("rim1")
    url = f"https://{rim1.address}:{site.ports.repository}/qrs/about?xrfkey=abcdefghijklmnop"
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await call("GET", url, site_mtls, qrs_headers(), server_hostname="central.qliksim.test")


async def test_servernodeconfiguration_lists_every_node_with_documented_fields(site, site_mtls):
    """GET /qrs/servernodeconfiguration/full: one ServerNodeConfiguration per node."""
    nodes = await qrs(site, site_mtls, "/qrs/servernodeconfiguration/full")
    assert [n["hostName"] for n in nodes] == list(site.hosts)
    assert all(set(n) >= NODE_FIELDS for n in nodes)
    central, rim1, rim2 = nodes
    assert (central["isCentral"], rim1["isCentral"]) == (True, False)
    assert [n["nodePurpose"] for n in nodes] == [2, 0, 1]
    assert rim2["proxyEnabled"] is False
    assert rim1["schedulerEnabled"] is False
    assert {n["schemaPath"] for n in nodes} == {"ServerNodeConfiguration"}


async def test_every_nodes_repository_answers_for_the_site(site, site_mtls):
    """Rim repositories list the same nodes (shared database); /local names the node itself."""
    lists = [
        await qrs(site, site_mtls, "/qrs/servernodeconfiguration/full", n.name) for n in site.nodes
    ]
    assert lists[0] == lists[1] == lists[2]
    local = await qrs(site, site_mtls, "/qrs/servernodeconfiguration/local", "rim2")
    assert local["configuration"]["id"] == site.node("rim2").id
    assert local["proxyServiceID"] == "00000000-0000-0000-0000-000000000000"


async def test_site_endpoints_need_xrfkey_and_user(site, site_mtls):
    """The new QRS endpoints keep the xrfkey (403 XSRF text) and X-Qlik-User checks."""
    url = site.url("repository", "/qrs/ServiceStatus/full")
    status, _, body = await site_call(site, "GET", url, site_mtls, qrs_headers())
    assert (status, body) == (403, "XSRF prevention check failed. Possible XSRF discovered.")
    url = qrs_url(site, "/qrs/license")
    status, _, body = await site_call(site, "GET", url, site_mtls, qrs_headers(user=None))
    assert status == 403
    assert "X-Qlik-User" in body


async def test_qrs_paths_are_case_insensitive(site, site_mtls):
    """/qrs/ServiceStatus/full and /qrs/servicestatus/full are the same endpoint."""
    a = await qrs(site, site_mtls, "/qrs/ServiceStatus/full")
    b = await qrs(site, site_mtls, "/qrs/servicestatus/full")
    assert a == b


async def test_service_status_covers_every_service_on_every_node(site, site_mtls):
    """Six entries per node; services a node does not run are Disabled, others Running."""
    entries = await qrs(site, site_mtls, "/qrs/ServiceStatus/full")
    assert len(entries) == 6 * len(site.nodes)
    assert states(entries, "central") == dict.fromkeys(SERVICE_TYPES, "running")
    assert states(entries, "rim1") == {
        "repository": "running",
        "proxy": "running",
        "scheduler": "disabled",
        "engine": "running",
        "app_migration": "disabled",
        "printing": "disabled",
    }
    assert states(entries, "rim2")["proxy"] == "disabled"
    entry = entries[0]
    assert {"id", "serverNodeConfiguration", "serviceType", "serviceState", "timestamp"} <= set(
        entry
    )
    assert set(entry["serverNodeConfiguration"]) >= {"id", "name", "hostName"}
    dt.datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00"))


async def test_service_status_filter(site, site_mtls):
    """The QRS filter syntax narrows the list (dotted fields, eq, and/or)."""
    query = "filter=serverNodeConfiguration.name eq 'rim1' and serviceType eq '3'"
    entries = await qrs(site, site_mtls, "/qrs/ServiceStatus/full", query=query)
    assert [(e["serverNodeConfiguration"]["name"], e["serviceType"]) for e in entries] == [
        ("rim1", 3)
    ]


async def test_unreadable_filter_is_400(site, site_mtls):
    """A filter the simulator cannot read is a 400 that names the clause."""
    url = qrs_url(site, "/qrs/servernodeconfiguration/full", query="filter=name is 'x'")
    status, _, body = await site_call(site, "GET", url, site_mtls, qrs_headers())
    assert status == 400
    assert "name is 'x'" in body


async def test_a_service_the_node_does_not_run_refuses_connections(site, site_mtls, site_tls):
    """rim2 runs no proxy: its QPS and virtual-proxy ports refuse; its engine answers."""
    assert await refused(site, qps_url(site, "/qps/session", "rim2"), site_mtls)
    assert await refused(site, site.url("frontend", "/jwt/qps/user", "rim2"), site_tls)
    url = site.url("engine", "/engine/healthcheck", "rim2")
    status, _, _ = await site_call(site, "GET", url, site_mtls)
    assert status == 200


async def test_stop_node_refuses_every_port_and_start_restores(site, site_mtls, site_tls):
    """A stopped node refuses on all ports; the QRS says NoCommunication; start brings it back."""
    await site.stop_node("rim1")
    for service in ("repository", "proxy", "engine", "frontend"):
        assert await refused(
            site, site.url(service, "/", "rim1"), site_tls if service == "frontend" else site_mtls
        )
    entries = await qrs(site, site_mtls, "/qrs/ServiceStatus/full")
    assert states(entries, "rim1")["engine"] == "no_communication"
    assert states(entries, "rim1")["scheduler"] == "disabled"
    assert states(entries, "central")["engine"] == "running"
    await site.start_node("rim1")
    assert (await qrs(site, site_mtls, "/qrs/about", "rim1"))["nodeType"] == 2
    entries = await qrs(site, site_mtls, "/qrs/ServiceStatus/full")
    assert states(entries, "rim1")["engine"] == "running"


async def test_stopped_central_leaves_rim_repositories_answering(site, site_mtls):
    """With the central node down, a rim's QRS still lists the site and shows central down."""
    await site.stop_node("central")
    assert await refused(site, qrs_url(site, "/qrs/about"), site_mtls)
    entries = await qrs(site, site_mtls, "/qrs/ServiceStatus/full", "rim1")
    assert set(states(entries, "central").values()) == {"no_communication"}


async def test_stop_service_refuses_only_that_port(site, site_mtls):
    """Stopping rim1's engine refuses port 4747 there; its repository still answers."""
    await site.stop_service("rim1", "engine")
    assert await refused(site, site.url("engine", "/healthcheck", "rim1"), site_mtls)
    entries = await qrs(site, site_mtls, "/qrs/ServiceStatus/full", "rim1")
    assert states(entries, "rim1")["engine"] == "no_communication"
    assert states(entries, "rim1")["proxy"] == "running"
    await site.start_service("rim1", "engine")
    status, _, _ = await site_call(
        site, "GET", site.url("engine", "/healthcheck", "rim1"), site_mtls
    )
    assert status == 200


async def test_set_service_state_changes_only_the_report(site, site_mtls):
    """set_service_state reports any state with its timestamp; None returns to the real one."""
    when = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
    site.set_service_state("rim2", "scheduler", "no_communication", when)
    entries = await qrs(site, site_mtls, "/qrs/ServiceStatus/full")
    entry = next(
        e
        for e in entries
        if e["serverNodeConfiguration"]["name"] == "rim2" and e["serviceType"] == 2
    )
    assert (entry["serviceState"], entry["timestamp"]) == (3, "2024-05-01T12:00:00.000Z")
    site.set_service_state("rim2", "scheduler", None)
    assert (
        states(await qrs(site, site_mtls, "/qrs/ServiceStatus/full"), "rim2")["scheduler"]
        == "running"
    )


@pytest.mark.parametrize(
    ("service", "state", "match"),
    [("broker", "running", "unknown service"), ("engine", "stopped", "unknown state")],
)
def test_set_service_state_rejects_unknown_names(tmp_path, service, state, match):
    """Unknown services or states are refused with the known names."""
    sim = Simulator(tmp_path, nodes=2)
    with pytest.raises(ValueError, match=match):
        sim.set_service_state("rim1", service, state)


async def test_add_and_remove_node_change_the_node_list(site, site_mtls):
    """An added node is listed, resolvable and listening; a removed one is gone and refuses."""
    node = await site.add_node(NodeSpec("rim3", engine=True, proxy=False))
    assert node.address == "127.0.0.5"
    assert site.hosts["rim3.qliksim.test"] == "127.0.0.5"
    names = [n["name"] for n in await qrs(site, site_mtls, "/qrs/servernodeconfiguration/full")]
    assert names == ["central", "rim1", "rim2", "rim3"]
    status, _, _ = await site_call(
        site, "GET", site.url("engine", "/healthcheck", "rim3"), site_mtls
    )
    assert status == 200
    await site.remove_node("rim1")
    names = [n["name"] for n in await qrs(site, site_mtls, "/qrs/servernodeconfiguration/full")]
    assert names == ["central", "rim2", "rim3"]
    url = f"https://127.0.0.3:{site.ports.repository}/qrs/about"
    with pytest.raises(aiohttp.ClientConnectorError):
        await call("GET", url, site_mtls, qrs_headers())


async def test_central_cannot_be_removed_or_duplicated(site):
    """The central node stays; a second central or a duplicate name is refused."""
    with pytest.raises(ValueError, match="central"):
        await site.remove_node("central")
    with pytest.raises(ValueError, match="central"):
        await site.add_node(NodeSpec("other", central=True))
    with pytest.raises(ValueError, match="exists"):
        await site.add_node(NodeSpec("RIM1"))


async def test_resolver_maps_node_names_and_nothing_else(site):
    """SiteResolver: node names (any case) to addresses; other names fail like DNS does."""
    resolver = site.resolver()
    assert await resolver.resolve("RIM1.qliksim.test", 4242) == ["127.0.0.3"]
    with pytest.raises(socket.gaierror):
        await resolver.resolve("example.com", 443)
    await site.add_node(NodeSpec("late"))
    assert await resolver.resolve("late.qliksim.test", 4242) == ["127.0.0.5"]
    assert resolver.calls == ["RIM1.qliksim.test", "example.com", "late.qliksim.test"]


async def test_unresolvable_node_is_left_out_of_the_mapping(site, site_mtls):
    """A node with resolvable=False is listed by the QRS but its name does not resolve."""
    await site.add_node(NodeSpec("ghost", resolvable=False))
    names = [n["hostName"] for n in await qrs(site, site_mtls, "/qrs/servernodeconfiguration/full")]
    assert "ghost.qliksim.test" in names
    assert "ghost.qliksim.test" not in site.hosts
    with pytest.raises(socket.gaierror):
        await SiteResolver(site.hosts).resolve("ghost.qliksim.test", 4242)


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("other_ca", "certificate verify failed"),
        ("wrong_host", "Hostname mismatch"),
        ("expired", "certificate has expired"),
    ],
)
async def test_regenerated_certificate_fails_on_that_node_only(site, site_mtls, kind, error):
    """A regenerated node certificate fails verification there; other nodes are unaffected."""
    site.regenerate_node_certificate("rim1", kind)
    with pytest.raises(aiohttp.ClientConnectorCertificateError, match=error):
        await site_call(site, "GET", qrs_url(site, "/qrs/about", "rim1"), site_mtls, qrs_headers())
    assert (await qrs(site, site_mtls, "/qrs/about", "central"))["nodeType"] == 1
    site.restore_node_certificate("rim1")
    assert (await qrs(site, site_mtls, "/qrs/about", "rim1"))["nodeType"] == 2


async def test_renewed_certificate_is_trusted_with_a_new_end(site, site_mtls):
    """kind=renewed serves a new certificate from the site CA with the given lifetime."""
    path = site.regenerate_node_certificate("rim1", "renewed", valid_days=20)
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    left = cert.not_valid_after_utc - dt.datetime.now(dt.UTC)
    assert dt.timedelta(days=19) < left <= dt.timedelta(days=20)
    assert (await qrs(site, site_mtls, "/qrs/about", "rim1"))["nodeType"] == 2


async def test_node_fault_applies_to_that_node_only(site, site_mtls):
    """A fault set on one node's repository leaves the other nodes answering."""
    site.node("rim1").faults.set("repository", "status", status=503)
    status, _, _ = await site_call(
        site, "GET", qrs_url(site, "/qrs/about", "rim1"), site_mtls, qrs_headers()
    )
    assert status == 503
    assert (await qrs(site, site_mtls, "/qrs/about", "rim2"))["nodeType"] == 2


async def test_site_wide_fault_applies_to_every_node(site, site_mtls):
    """A fault on the simulator's own Faults hits the service on every node."""
    site.faults.set("engine", "status", status=500)
    for node in ("central", "rim1", "rim2"):
        url = site.url("engine", "/healthcheck", node)
        assert (await site_call(site, "GET", url, site_mtls))[0] == 500


async def test_a_node_can_run_another_build(site, site_mtls):
    """set_node_versions: that node's /qrs/about and engine report another version."""
    site.set_node_versions("rim1", build_version="30.4.0.0", engine_version="12.1500.2")
    assert (await qrs(site, site_mtls, "/qrs/about", "rim1"))["buildVersion"] == "30.4.0.0"
    assert (await qrs(site, site_mtls, "/qrs/about", "rim2"))["buildVersion"] == "31.43.0.0"
    url = site.url("engine", "/engine/healthcheck", "rim1")
    _, _, body = await site_call(site, "GET", url, site_mtls)
    assert json.loads(body)["version"] == "12.1500.2"


async def test_virtualproxyconfig_lists_every_virtual_proxy(site, site_mtls):
    """virtualproxyconfig/full: every prefix with its cookie name; `prefix eq` filters work."""
    vps = await qrs(site, site_mtls, "/qrs/virtualproxyconfig/full")
    by_prefix = {vp["prefix"]: vp for vp in vps}
    assert set(by_prefix) == {"", "jwt", "hdr", "hdrdyn"}
    assert by_prefix[""]["sessionCookieHeaderName"] == "X-Qlik-Session"
    assert by_prefix[""]["defaultVirtualProxy"] is True
    assert by_prefix["jwt"]["sessionCookieHeaderName"] == "X-Qlik-Session-jwt"
    assert by_prefix["jwt"]["authenticationMethod"] == 4
    assert [n["hostName"] for n in by_prefix["jwt"]["loadBalancingServerNodes"]] == list(site.hosts)
    # Ctrl-Q sends `prefix eq 'a' or prefix eq 'b'` through encodeURI.
    query = "filter=prefix%20eq%20'jwt'%20or%20prefix%20eq%20''"
    picked = await qrs(site, site_mtls, "/qrs/virtualproxyconfig/full", query=query)
    assert sorted(vp["prefix"] for vp in picked) == ["", "jwt"]


async def test_proxyservice_lists_proxy_nodes_with_their_virtual_proxies(site, site_mtls):
    """proxyservice/full: one per node running a proxy, linked to every virtual proxy by id."""
    proxies = await qrs(site, site_mtls, "/qrs/proxyservice/full")
    assert [p["serverNodeConfiguration"]["hostName"] for p in proxies] == [
        "central.qliksim.test",
        "rim1.qliksim.test",
    ]
    vp_ids = {vp["id"] for vp in await qrs(site, site_mtls, "/qrs/virtualproxyconfig/full")}
    for proxy in proxies:
        assert {vp["id"] for vp in proxy["settings"]["virtualProxies"]} == vp_ids
        assert proxy["settings"]["restListenPort"] == site.ports.proxy


async def test_default_virtual_proxy_sessions_with_an_empty_prefix(site, site_mtls):
    """GET /qps//session (empty prefix, as Ctrl-Q sends it) lists the default VP's sessions."""
    site.proxy_sessions.create("", "LAB", "anna")
    site.proxy_sessions.create("jwt", "LAB", "bob")
    status, _, body = await site_call(
        site, "GET", qps_url(site, "/qps//session"), site_mtls, qrs_headers()
    )
    assert status == 200
    assert [s["UserId"] for s in json.loads(body)] == ["anna"]


async def test_each_proxy_lists_only_its_own_sessions(site, site_mtls, site_tls):
    """A login through rim1's virtual proxy is a session on rim1's QPS, not on central's."""
    token = site.mint_jwt("carol")
    url = site.url("frontend", "/jwt/qps/user", "rim1")
    status, _, _ = await site_call(site, "GET", url, site_tls, {"Authorization": f"Bearer {token}"})
    assert status == 200
    on = {}
    for node in ("central", "rim1"):
        _, _, body = await site_call(
            site, "GET", qps_url(site, "/qps/jwt/session", node), site_mtls, qrs_headers()
        )
        on[node] = [s["UserId"] for s in json.loads(body)]
    assert on == {"central": [], "rim1": ["carol"]}
    await site.stop_node("rim1")
    assert site.proxy_session_count("LAB", "carol") == 0  # a stopped proxy forgets its sessions


async def proxied_engine_session(site: Simulator, ctx: ssl.SSLContext, node: str) -> None:
    """Open (and close) an engine websocket through ``node``'s JWT virtual proxy."""
    connector = aiohttp.TCPConnector(resolver=site.aiohttp_resolver())
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=5)
    ) as s:
        headers = {"Authorization": f"Bearer {site.mint_jwt('dave')}"}
        async with s.get(
            site.url("frontend", "/jwt/qps/csrftoken", node), ssl=ctx, headers=headers
        ) as r:
            token = r.headers["qlik-csrf-token"]
        url = site.url("frontend", f"/jwt/app/engineData?qlik-csrf-token={token}", node)
        ws = await s.ws_connect(url.replace("https", "wss"), ssl=ctx)
        await ws.receive_str(timeout=3)
        await ws.close()


async def test_proxy_balances_to_its_own_engine_else_another(site, site_tls):
    """A proxied session uses the proxy node's engine; with it stopped, another running one."""
    await proxied_engine_session(site, site_tls, "rim1")
    assert site.node("rim1").engine_sessions_total == 1
    await site.stop_service("rim1", "engine")
    await proxied_engine_session(site, site_tls, "rim1")
    assert site.node("rim1").engine_sessions_total == 1
    assert site.node("central").engine_sessions_total == 1

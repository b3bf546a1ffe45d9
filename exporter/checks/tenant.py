"""``tenant``: ``GET /api/v1/users/me`` on Qlik Cloud, then ``/api/v1/tenants/me``.

This is what Ctrl-Q's ``qscloud connection-test`` does through ``@qlik/api``.
"""

from __future__ import annotations

from exporter.checks.context import ProbeContext
from exporter.reasons import ProbeFailure
from exporter.results import CheckValues, TenantInfo


async def run(ctx: ProbeContext) -> CheckValues:
    """Who the API key is, and the tenant's name when the key may read it."""
    me = ctx.json(await ctx.request("/api/v1/users/me"))
    if not isinstance(me, dict):
        raise ctx.invalid("/api/v1/users/me did not return an object")
    user_id, tenant_id, status = me.get("id"), me.get("tenantId"), me.get("status")
    if not all(isinstance(v, str) and v for v in (user_id, tenant_id, status)):
        raise ctx.invalid("/api/v1/users/me lacks id, tenantId or status")
    assert isinstance(user_id, str)
    assert isinstance(tenant_id, str)
    assert isinstance(status, str)
    name = ""
    try:
        tenant = ctx.json(await ctx.request("/api/v1/tenants/me"))
    except ProbeFailure as exc:
        # Not every key may read the tenant; the login itself already succeeded.
        ctx.note(f"tenants/me skipped: {exc.message}")
    else:
        if isinstance(tenant, dict) and isinstance(tenant.get("name"), str):
            name = tenant["name"][:128]
    info = TenantInfo(
        tenant_id=tenant_id[:64], user_id=user_id[:64], user_status=status[:32], tenant_name=name
    )
    return CheckValues(
        tenant=info,
        details={"tenant id": info.tenant_id, "user id": info.user_id, "user status": status}
        | ({"tenant name": name} if name else {}),
    )

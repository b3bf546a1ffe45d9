"""``proxy``: the proxy service answers for this identity.

Direct (certificate auth): ``GET https://host:4243/qps/[{vp}/]session?xrfkey=K`` lists the
virtual proxy's sessions. Through a virtual proxy: the personal API ``GET /{vp}/qps/user``
("whoami") must answer for the configured user.
"""

from __future__ import annotations

from exporter.auth.header import HeaderAuth
from exporter.auth.jwt import JwtAuth
from exporter.checks.context import ProbeContext
from exporter.reasons import ProbeFailure, Reason
from exporter.results import CheckValues


async def run(ctx: ProbeContext) -> CheckValues:
    """Count sessions (direct) or check whoami (through a virtual proxy)."""
    if ctx.via_proxy:
        return await _whoami(ctx)
    vp = ctx.target.virtual_proxy
    path = f"/qps/{vp}/session" if vp else "/qps/session"
    sessions = ctx.json(await ctx.request(path, xrfkey=True))
    if not isinstance(sessions, list) or not all(isinstance(s, dict) for s in sessions):
        raise ctx.invalid(f"{path} did not return a list of sessions")
    return CheckValues(
        proxy_sessions=(vp, len(sessions)), details={"proxy sessions": str(len(sessions))}
    )


def expected_user(ctx: ProbeContext) -> tuple[str | None, str]:
    """The (directory, id) the configured auth logs in as; directory None if the VP decides."""
    auth = ctx.target.auth
    if isinstance(auth, JwtAuth):
        return auth.user_directory, auth.user_id or ""
    if isinstance(auth, HeaderAuth):
        return auth.user_directory, auth.user_id
    return None, ""


async def _whoami(ctx: ProbeContext) -> CheckValues:
    me = ctx.json(await ctx.request(ctx.path("/qps/user"), xrfkey=True))
    if not isinstance(me, dict):
        raise ctx.invalid("/qps/user did not return an object")
    if me.get("session") == "inactive":
        raise ProbeFailure(Reason.UNAUTHORIZED, "/qps/user: no session (session inactive)")
    directory, user = me.get("userDirectory"), me.get("userId")
    if not isinstance(directory, str) or not isinstance(user, str):
        raise ctx.invalid("/qps/user has no userDirectory/userId")
    want_dir, want_user = expected_user(ctx)
    # Qlik compares user ids and directories case-insensitively.
    same = (not want_user or user.lower() == want_user.lower()) and (
        want_dir is None or directory.lower() == want_dir.lower()
    )
    if not same:
        raise ProbeFailure(
            Reason.WRONG_USER,
            f"/qps/user answered for {directory}\\{user}, expected {want_dir or '*'}\\{want_user}",
        )
    return CheckValues(details={"user": f"{directory}\\{user}"})

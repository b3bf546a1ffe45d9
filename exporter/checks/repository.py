"""``repository``: ``GET /qrs/about`` — the call Ctrl-Q's connection-test makes.

Direct: ``https://host:4242/qrs/about?xrfkey=K`` with the client certificate and
``X-Qlik-User``. Through a virtual proxy: ``https://host/{vp}/qrs/about?xrfkey=K``.
"""

from __future__ import annotations

from exporter.checks.context import ProbeContext
from exporter.results import CheckValues


async def run(ctx: ProbeContext) -> CheckValues:
    """Read the build version and date of the repository service."""
    about = ctx.json(await ctx.request(ctx.path("/qrs/about"), xrfkey=True))
    return parse_about(ctx, about)


def parse_about(ctx: ProbeContext, about: object) -> CheckValues:
    """``buildVersion`` and ``buildDate`` from an About object.

    ``buildDate`` is kept verbatim: it is US-style and real servers send oddities such as
    ``4/12/2024 18:12:20 PM`` (ctrl-q-docs, connection-test), so it is a label, not a time.
    """
    if not isinstance(about, dict):
        raise ctx.invalid("/qrs/about did not return an object")
    version, date = about.get("buildVersion"), about.get("buildDate")
    if not isinstance(version, str) or not version.strip():
        raise ctx.invalid("/qrs/about has no buildVersion")
    if not isinstance(date, str):
        raise ctx.invalid("/qrs/about has no buildDate")
    version, date = version.strip()[:64], date.strip()[:64]
    return CheckValues(
        repository_build=(version, date),
        details={"build version": version, "build date": date},
    )

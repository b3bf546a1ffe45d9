"""The command line: the daemon, ``--config.check``, ``probe``, ``demo`` and ``sim``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import yaml
from pydantic import ValidationError

import exporter
from exporter import report
from exporter.config import Config, ConfigError, load_config, parse_duration
from exporter.daemon import Daemon
from exporter.logs import setup_logging
from exporter.settings import Settings

log = logging.getLogger("exporter")

FLAGS = {
    "config.file": "config_file",
    "web.listen-address": "web_listen_address",
    "web.config.file": "web_config_file",
    "web.max-connections": "web_max_connections",
    "web.header-timeout": "web_header_timeout",
    "log.level": "log_level",
    "log.format": "log_format",
    "shard": "shard",
}


def _common(parser: argparse.ArgumentParser, *, sub: bool = False) -> None:
    # In a subcommand, an absent flag must not overwrite the same flag given before it.
    default = argparse.SUPPRESS if sub else None
    parser.add_argument(
        "--config.file",
        dest="config_file",
        metavar="FILE",
        default=default,
        help="YAML config (default qlik-sense-exporter.yml; env QLIK_EXPORTER_CONFIG_FILE)",
    )
    parser.add_argument(
        "--log.level",
        dest="log_level",
        default=default,
        choices=["debug", "info", "warning", "error"],
    )
    parser.add_argument(
        "--log.format", dest="log_format", default=default, choices=["logfmt", "json"]
    )


def build_parser() -> argparse.ArgumentParser:
    """All commands and flags."""
    p = argparse.ArgumentParser(
        prog="qlik-sense-exporter",
        description="Prometheus exporter that logs in to Qlik Sense like a real client.",
    )
    _common(p)
    p.add_argument(
        "--web.listen-address",
        dest="web_listen_address",
        metavar="HOST:PORT",
        help="where to serve /metrics (default :9851)",
    )
    p.add_argument(
        "--web.config.file",
        dest="web_config_file",
        metavar="FILE",
        help="exporter-toolkit web config: TLS and basic auth",
    )
    p.add_argument(
        "--web.max-connections",
        dest="web_max_connections",
        type=int,
        metavar="N",
        help="connections served at once; more are closed (default 256)",
    )
    p.add_argument(
        "--web.header-timeout",
        dest="web_header_timeout",
        type=float,
        metavar="SECONDS",
        help="time a client has to send a request head, TLS included (default 10)",
    )
    p.add_argument("--shard", metavar="I/N", help="probe only the targets of shard I of N")
    p.add_argument(
        "--config.check",
        dest="config_check",
        action="store_true",
        help="validate the config file, print errors one per line, exit 0 or 1",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {exporter.__version__}")
    sub = p.add_subparsers(dest="command")
    probe = sub.add_parser("probe", help="run one target's checks once and print a report")
    _common(probe, sub=True)
    probe.add_argument("target", help="target name from the config")
    probe.add_argument("--check", help="only this check")
    probe.add_argument(
        "--output", choices=("text", "json"), default="text", help="report format (default text)"
    )
    demo = sub.add_parser("demo", help="start the bundled simulator and the exporter against it")
    _common(demo, sub=True)
    demo.add_argument(
        "--web.listen-address",
        dest="web_listen_address",
        metavar="HOST:PORT",
        default="127.0.0.1:9851",
        help="where to serve /metrics (default 127.0.0.1:9851)",
    )
    demo.add_argument("--dir", type=Path, help="folder for the simulator's certificates")
    demo.add_argument("--interval", default="15s", help="probe interval (default 15s)")
    sub.add_parser(
        "sim", help="run the Qlik Sense simulator alone (see `sim --help`)", add_help=False
    )
    return p


def settings_from(args: argparse.Namespace) -> Settings:
    """Flags given on the command line, over ``QLIK_EXPORTER_*`` variables, over defaults."""
    given = {
        field: getattr(args, field)
        for field in FLAGS.values()
        if getattr(args, field, None) is not None
    }
    return Settings(**given)


def settings_errors(exc: ValidationError, args: argparse.Namespace) -> list[str]:
    """One line per invalid setting, named as the flag or variable it came from."""
    flags = {field: flag for flag, field in FLAGS.items()}
    lines = []
    for err in exc.errors(include_input=False, include_url=False):
        field = str(err["loc"][0]) if err["loc"] else ""
        if getattr(args, field, None) is not None and field in flags:
            name = f"--{flags[field]}"
        else:
            name = f"QLIK_EXPORTER_{field.upper()}"
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{name}: {msg}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``qlik-sense-exporter`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sim"]:
        from exporter.sim.__main__ import main as sim_main

        return sim_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from(args)
    except ValidationError as exc:
        for line in settings_errors(exc, args):
            print(line, file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.log_format)
    if args.command == "probe":
        return asyncio.run(probe_command(settings, args.target, args.check, args.output))
    if args.command == "demo":
        return asyncio.run(demo_command(settings, args))
    if getattr(args, "config_check", False):
        return config_check(settings.config_file)
    return asyncio.run(serve(settings))


def config_check(path: Path) -> int:
    """``--config.check``: 0 and a summary if valid, else 1 and each error on its own line."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        return 1
    errors = credential_errors(config)
    for line in errors:
        print(line, file=sys.stderr)
    if errors:
        return 1
    checks = sum(len(t.enabled_checks) for t in config.targets)
    print(f"{path}: OK ({len(config.targets)} targets, {checks} checks)")
    return 0


def credential_errors(config: Config) -> list[str]:
    """One line per target whose credentials fail what can be checked offline: a key that is
    not one, a wrong password, a key that does not match its certificate, an expired token."""
    from exporter.auth import CredentialError
    from exporter.runner import Prober

    lines = []
    for i, target in enumerate(config.targets):
        try:
            Prober.build(target).auth.verify()
        except CredentialError as exc:
            lines.append(f"targets[{i}].auth ({target.name}): {exc.message}")
    return lines


async def serve(settings: Settings, *, ready: asyncio.Event | None = None) -> int:
    """Run the daemon until SIGTERM/SIGINT; SIGHUP reloads the config."""
    from exporter.web import create_app, run_server
    from exporter.webconfig import WebConfigError, load_web_config

    daemon = Daemon(settings.config_file, shard=settings.shard_spec)
    try:
        config = daemon.read_config()
    except ConfigError as exc:
        for line in exc.errors:
            log.error("invalid config", extra={"error": line})
        return 1
    web_config = None
    if settings.web_config_file is not None:
        try:
            web_config = load_web_config(settings.web_config_file)
        except WebConfigError as exc:
            for line in exc.errors:
                log.error("invalid web config", extra={"error": line})
            return 1
    try:  # bind first: a busy port should not leave a scheduler probing for nothing
        runner, port = await run_server(
            create_app(daemon),
            settings.web_listen_address,
            web_config,
            max_connections=settings.web_max_connections,
            header_timeout=settings.web_header_timeout,
        )
    except OSError as exc:
        log.error(
            "cannot listen",
            extra={"address": settings.web_listen_address, "error": exc.strerror or str(exc)},
        )
        return 1
    daemon.start(config)
    log.info("listening", extra={"address": settings.web_listen_address, "port": port})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reloads: set[asyncio.Task[list[str]]] = set()

    def on_hup() -> None:
        task = loop.create_task(daemon.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hup)
    if ready is not None:
        ready.set()
    await stop.wait()
    log.info("shutting down")
    await daemon.stop()
    await runner.cleanup()
    return 0


# -- probe ------------------------------------------------------------------------------


async def probe_command(settings: Settings, target: str, check: str | None, output: str) -> int:
    """``probe TARGET [--check C] [--output text|json]``: run once, print the report, exit 1
    on any failure (2 when the target or check is not in the config)."""
    try:
        config = load_config(settings.config_file)
    except ConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        return 2
    t = config.target(target)
    if t is None:
        names = ", ".join(x.name for x in config.targets) or "none"
        print(f"unknown target {target!r}; the config has: {names}", file=sys.stderr)
        return 2
    daemon = Daemon(settings.config_file)
    daemon.apply(config)
    try:
        results = await daemon.probe(target, check)
    except (KeyError, ValueError) as exc:
        print(exc.args[0] if exc.args else exc, file=sys.stderr)
        return 2
    ports = {r.check: t.port_for(r.check) for r in results}
    if output == "json":
        print(report.as_json(results, t.host, ports))
    else:
        print("\n".join(report.format_target(results, t.host, ports)))
    return 0 if all(r.success for r in results) else 1


# -- demo -------------------------------------------------------------------------------


def demo_config(sim: object, *, interval: str) -> dict[str, object]:
    """One target per auth method against a started simulator, every check each supports; the
    certificate target discovers the site's nodes."""
    from exporter.sim import Simulator

    assert isinstance(sim, Simulator)
    d = sim.certs_dir
    try:
        timeout: object = min(5.0, parse_duration(interval))
    except ValueError:
        timeout = "5s"  # the config's own validation reports the bad interval
    api_key = d / "cloud_api_key"
    api_key.write_text(sim.cloud_issue_api_key(sub=sim.cloud_user_id) + "\n")
    api_key.chmod(0o600)
    client_id, client_secret = sim.cloud.create_oauth_client("demo-monitoring")
    oauth_secret = d / "cloud_oauth_client_secret"
    oauth_secret.write_text(client_secret + "\n")
    oauth_secret.chmod(0o600)
    ports = {
        "repository": sim.ports.repository,
        "proxy": sim.ports.proxy,
        "engine": sim.ports.engine,
    }
    return {
        "defaults": {"interval": interval, "timeout": timeout, "ca_file": str(d / "root.pem")},
        "targets": [
            {
                "name": "demo-certificate",
                "type": "qseow",
                "host": sim.host,
                "discover": True,
                "checks": [
                    "repository",
                    "proxy",
                    "engine",
                    "engine_session",
                    "services",
                    "license",
                ],
                "ports": ports,
                "auth": {
                    "method": "certificate",
                    "cert_file": str(d / "client.pem"),
                    "key_file": str(d / "client_key.pem"),
                    "user_directory": "INTERNAL",
                    "user_id": "sa_api",
                },
            },
            {
                "name": "demo-jwt",
                "type": "qseow",
                "host": sim.host,
                "port": sim.ports.frontend,
                "virtual_proxy": sim.jwt_vp.prefix,
                "checks": ["repository", "proxy", "engine"],
                "auth": {
                    "method": "jwt",
                    "signing_key_file": str(d / "jwt_signing_key.pem"),
                    "signing_cert_file": str(d / "jwt_signing_cert.pem"),
                    "audience": sim.jwt_vp.audience,
                    "user_directory": "LAB",
                    "user_id": "monitor",
                },
            },
            {
                "name": "demo-header",
                "type": "qseow",
                "host": sim.host,
                "port": sim.ports.frontend,
                "virtual_proxy": sim.header_vp.prefix,
                "checks": ["repository", "proxy", "engine"],
                "auth": {
                    "method": "header",
                    "header_name": sim.header_vp.header_name,
                    "user_id": "monitor",
                },
            },
            {
                "name": "demo-cloud",
                "type": "cloud",
                "host": sim.cloud_host,
                "port": sim.ports.cloud,
                "checks": ["tenant"],
                "auth": {"method": "apikey", "api_key_file": str(api_key)},
            },
            {
                "name": "demo-cloud-oauth",
                "type": "cloud",
                "host": sim.cloud_host,
                "port": sim.ports.cloud,
                "checks": ["tenant"],
                "auth": {
                    "method": "oauth",
                    "client_id": client_id,
                    "client_secret_file": str(oauth_secret),
                },
            },
        ],
    }


async def demo_command(settings: Settings, args: argparse.Namespace) -> int:
    """Start the simulator (a three-node site and a Cloud tenant) with fresh certificates and
    the exporter pointed at it."""
    from exporter.sim import Simulator
    from exporter.sim.site import addressed_site

    with contextlib.ExitStack() as stack:
        folder = args.dir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="qlik-demo-"))
        )
        # A three-node site named by address, so that `probe` in another shell reaches it too.
        sim = Simulator(Path(folder), nodes=addressed_site())
        await sim.start()
        try:
            config_file = Path(folder) / "demo-config.yml"
            config_file.write_text(
                yaml.safe_dump(demo_config(sim, interval=args.interval), sort_keys=False)
            )
            demo_settings = Settings(
                config_file=config_file,
                web_listen_address=settings.web_listen_address,
                log_level=settings.log_level,
                log_format=settings.log_format,
            )
            ready = asyncio.Event()
            server = asyncio.create_task(serve(demo_settings, ready=ready))
            done, _ = await asyncio.wait(
                [server, asyncio.create_task(ready.wait())], return_when=asyncio.FIRST_COMPLETED
            )
            if server in done:
                return server.result()
            print(
                f"Demo running: simulator certificates and config in {folder}\n"
                f"  metrics:      http://{_display(settings.web_listen_address)}/metrics\n"
                f"  status page:  http://{_display(settings.web_listen_address)}/\n"
                f"  simulator admin (faults): http://127.0.0.1:{sim.ports.admin}/state\n"
                f"  try: qlik-sense-exporter probe demo-certificate --config.file {config_file}\n"
                "Press Ctrl-C to stop.",
                flush=True,
            )
            return await server
        finally:
            await sim.stop()


def _display(address: str) -> str:
    host, _, port = address.rpartition(":")
    return f"{host or 'localhost'}:{port}"


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

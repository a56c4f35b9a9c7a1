"""The deployment files agree with the code: the Dockerfile, compose.yaml (its services and
their environment against the settings; secrets from the environment, never written in), the
systemd units (`systemd-analyze verify`) and the reverse-proxy configurations. Nothing is built
or started: Docker cannot run here."""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml
from sqlalchemy.engine import make_url

from khqrpay.cli.main import app as cli
from khqrpay.settings import Settings, environment_variable, is_secret

ROOT = Path(__file__).parents[2]
SYSTEMD = ROOT / "deploy" / "systemd"
SETTING_VARIABLES = {environment_variable(name) for name in Settings.model_fields}
SECRET_VARIABLES = {
    environment_variable(name) for name, field in Settings.model_fields.items() if is_secret(field)
}
# `${NAME:?message}`: compose refuses to start without NAME (from .env or the shell).
REQUIRED = re.compile(r"\$\{(?P<name>[A-Z0-9_]+):\?[^}]*\}")
OPTIONAL = re.compile(r"\$\{(?P<name>[A-Z0-9_]+):-\}")
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?::?[-?][^}]*)?\}")


def khqrpay_command(args: list[str]) -> dict[str, Any]:
    """The parameters `khqrpay ARGS` would run with; raises for an unknown command or option."""
    command = typer.main.get_command(cli)
    name = "khqrpay"
    while hasattr(command, "commands"):  # a group: the next word names the subcommand
        name, *args = args
        # get_command: the lazily loaded commands (serve, simulator, demo) too.
        found = command.get_command(None, name)  # type: ignore[attr-defined]
        if found is None:
            raise KeyError(name)
        command = found
    params: dict[str, Any] = command.make_context(name, args).params
    return params


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def test_the_command_parser_refuses_what_khqrpay_would_refuse() -> None:
    assert khqrpay_command(["worker", "--metrics-port", "9108"])["metrics_port"] == 9108
    with pytest.raises(Exception, match="No such option"):
        khqrpay_command(["serve", "--no-such-option"])
    with pytest.raises(KeyError):
        khqrpay_command(["no-such-command"])


# compose.yaml ----------------------------------------------------------------------------------


def test_compose_runs_postgresql_a_migration_the_web_app_and_the_worker(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    assert set(services) == {"db", "migrate", "web", "worker"}
    assert khqrpay_command(services["migrate"]["command"]) == {}
    assert services["migrate"]["command"] == ["db", "upgrade"]
    web = khqrpay_command(services["web"]["command"])
    assert web["worker"] is False  # the worker runs in its own service
    assert web["host"] == "0.0.0.0"
    assert services["web"]["ports"] == [f"127.0.0.1:{web['port']}:{web['port']}"]
    worker = khqrpay_command(services["worker"]["command"])
    assert str(worker["metrics_port"]) in " ".join(services["worker"]["healthcheck"]["test"])


def test_compose_starts_in_order_database_then_migration_then_the_rest(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    assert services["migrate"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert "healthcheck" in services["db"]
    for name in ("web", "worker"):
        assert services[name]["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"}
        }


def test_every_khqrpay_variable_compose_sets_is_a_setting(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        variables = set(service.get("environment", {}))
        unknown = {v for v in variables if v.startswith("KHQRPAY_")} - SETTING_VARIABLES
        assert not unknown, f"{name} sets variables no setting reads: {unknown}"
    khqrpay_services = ("migrate", "web", "worker")
    environments = [compose["services"][name]["environment"] for name in khqrpay_services]
    assert all(env == environments[0] for env in environments)


def test_compose_takes_every_secret_from_the_environment_never_from_the_file(
    compose: dict[str, Any],
) -> None:
    khqrpay = compose["services"]["web"]["environment"]
    for variable in SECRET_VARIABLES:
        # Required (`${NAME:?...}`), or optional and empty unless the environment sets it.
        taken = REQUIRED.fullmatch(khqrpay[variable]) or OPTIONAL.fullmatch(khqrpay[variable])
        assert taken, f"{variable} must be ${{{variable}:?...}} or ${{{variable}:-}}"
        assert taken["name"] == variable
    database = compose["services"]["db"]["environment"]
    assert REQUIRED.fullmatch(database["POSTGRES_PASSWORD"])
    url = make_url(khqrpay["KHQRPAY_DATABASE_URL"])
    assert url.drivername == "postgresql+psycopg"
    assert (url.host, url.username, url.database) == (
        "db",
        database["POSTGRES_USER"],
        database["POSTGRES_DB"],
    )
    assert REQUIRED.fullmatch(url.password or "")
    assert REQUIRED.fullmatch(url.password or "")["name"] == "POSTGRES_PASSWORD"  # type: ignore[index]


def test_env_example_names_every_variable_compose_requires() -> None:
    required = set(REQUIRED.findall((ROOT / "compose.yaml").read_text()))
    assert required <= set(example_values(ROOT / ".env.example"))


# Not settings, but read by what runs khqrpay: compose, PostgreSQL's image, httpx, uvicorn.
OTHER_VARIABLES = {"POSTGRES_PASSWORD", "HTTPS_PROXY", "NO_PROXY", "FORWARDED_ALLOW_IPS"}


def example_values(path: Path) -> dict[str, str]:
    text = path.read_text()
    return dict(re.findall(r"^([A-Z0-9_]+)=(.*)$", text, flags=re.MULTILINE))


@pytest.mark.parametrize("example", [".env.example", "deploy/systemd/khqrpay.env.example"])
def test_settings_examples_name_real_settings_and_leave_secrets_empty(example: str) -> None:
    values = example_values(ROOT / example)
    assert set(values) - OTHER_VARIABLES <= SETTING_VARIABLES
    for name in SECRET_VARIABLES | {"POSTGRES_PASSWORD"}:
        assert values.get(name, "") == "", f"{name} has a value in {example}"
    assert set(values) >= SECRET_VARIABLES, f"{example} should list every secret to fill in"


def test_every_docs_page_named_in_the_code_docs_and_deploy_files_exists() -> None:
    sources = [
        ROOT / "src" / "khqrpay" / "services" / "doctor.py",
        ROOT / "README.md",
        ROOT / "Dockerfile",
        ROOT / "compose.yaml",
        *(ROOT / "docs").glob("*.md"),
        *(path for path in (ROOT / "deploy").rglob("*") if path.is_file()),
    ]
    named = {
        page
        for source in sources
        for page in re.findall(r"docs/([a-z0-9-]+\.md)", source.read_text())
    }
    named |= set(
        re.findall(r"\]\(([a-z0-9-]+\.md)\)", (ROOT / "docs" / "production.md").read_text())
    )
    assert {"bakong.md", "configuration.md", "troubleshooting.md"} <= named
    assert not {page for page in named if not (ROOT / "docs" / page).is_file()}


def test_compose_interpolates_only_variables_the_operator_can_set(
    compose: dict[str, Any],
) -> None:
    text = (ROOT / "compose.yaml").read_text()
    used = {match["name"] for match in INTERPOLATION.finditer(text)}
    assert used - {"POSTGRES_PASSWORD"} <= SETTING_VARIABLES
    assert compose["services"]["db"]["image"].startswith("postgres:")


# Dockerfile ------------------------------------------------------------------------------------


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions (continuations joined, comments dropped), per stage."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        instruction, _, argument = line.strip().partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        stages[-1].append((instruction.upper(), argument.strip()))
    return stages


def test_the_image_is_slim_python_311_run_by_an_unprivileged_user() -> None:
    stages = dockerfile_stages()
    assert [stage[0] for stage in stages] == [
        ("FROM", "python:3.11-slim AS build"),
        ("FROM", "python:3.11-slim"),
    ]
    final = dict(stages[-1])
    assert final["USER"] not in ("root", "0")
    # Only the virtualenv comes from the build stage: no compiler or package cache is kept.
    copied = [arg for instruction, arg in stages[-1] if instruction == "COPY"]
    assert copied == ["--from=build /opt/khqrpay /opt/khqrpay"]
    assert not any("apt-get" in arg for _instruction, arg in stages[-1])
    assert (ROOT / ".dockerignore").read_text().splitlines()[1:4] == [
        "*",
        "!pyproject.toml",
        "!README.md",
    ]


def test_the_image_runs_khqrpay_and_checks_the_web_apps_health() -> None:
    final = dict(dockerfile_stages()[-1])
    assert final["ENTRYPOINT"] == '["khqrpay"]'
    command = yaml.safe_load(final["CMD"])
    served = khqrpay_command(command)
    assert f"http://127.0.0.1:{served['port']}/healthz" in final["HEALTHCHECK"]
    assert served["host"] == "0.0.0.0"


# systemd ---------------------------------------------------------------------------------------


def unit(path: Path) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment, method-assign]
    parser.read_string(path.read_text())
    return parser


UNITS = sorted(SYSTEMD.glob("*.service")) + sorted(SYSTEMD.glob("*.timer"))


def test_each_khqrpay_unit_runs_a_khqrpay_command_that_exists() -> None:
    commands = {}
    for path in SYSTEMD.glob("khqrpay-*@.service"):
        start = shlex.split(unit(path)["Service"]["ExecStart"].replace("%i", "8001"))
        assert start[0] == "/opt/khqrpay/venv/bin/khqrpay", path.name
        commands[path.name] = khqrpay_command(start[1:])
    assert commands["khqrpay-web@.service"]["worker"] is False
    assert commands["khqrpay-web@.service"]["host"] == "127.0.0.1"
    assert commands["khqrpay-worker@.service"]["metrics_port"] == 8001


def test_the_units_read_one_environment_file_and_run_as_the_service_user() -> None:
    for path in UNITS:
        if path.suffix == ".service":
            service = unit(path)["Service"]
            assert service["User"] == "khqrpay", path.name
            assert service["EnvironmentFile"].startswith("/etc/khqrpay/"), path.name
    timer = unit(SYSTEMD / "khqrpay-backup.timer")
    assert timer["Timer"]["OnCalendar"]
    assert timer["Install"]["WantedBy"] == "timers.target"


def test_the_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """With systemd-analyze: its verdict, warnings included; without it, the INI parse above."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        for path in UNITS:
            assert {"Unit", "Install"} & set(unit(path).sections()), path.name
        return
    # verify wants the commands to exist: point them at this environment's khqrpay.
    khqrpay = Path(sys.executable).with_name("khqrpay")
    copies = []
    for path in UNITS:
        copy = tmp_path / path.name
        copy.write_text(path.read_text().replace("/opt/khqrpay/venv/bin/khqrpay", str(khqrpay)))
        copies.append(str(copy))
    result = subprocess.run(
        [analyze, "verify", *copies], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


# Reverse proxies -------------------------------------------------------------------------------


def test_the_proxies_pass_server_sent_events_on_at_once_over_https() -> None:
    nginx = (ROOT / "deploy" / "nginx" / "khqrpay.conf").read_text()
    for directive in (
        "proxy_buffering off;",
        "proxy_read_timeout 1h;",
        "proxy_http_version 1.1;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "listen 443 ssl http2;",
        "return 301 https://$host$request_uri;",
    ):
        assert directive in nginx, directive
    caddy = (ROOT / "deploy" / "caddy" / "Caddyfile").read_text()
    assert "flush_interval -1" in caddy
    assert "health_uri /healthz" in caddy
    # Both send to the web processes the systemd example starts.
    for upstream in ("127.0.0.1:8001", "127.0.0.1:8002"):
        assert upstream in nginx
        assert upstream in caddy

"""`khqrpay admin ...`: the staff console's accounts: create, list, disable and enable them, set a
password. Passwords are read from stdin (`--password-stdin`) or asked for, never an argument."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from khqrpay.accounts import parse_role
from khqrpay.cli.common import fail, open_app, print_json
from khqrpay.services.accounts import create_user, list_users, set_disabled, set_password
from khqrpay.services.schemas import StaffUserView

app = typer.Typer(help="Staff console accounts.", no_args_is_help=True)
UserName = Annotated[str, typer.Argument(help="The account's user name.")]
PasswordStdin = Annotated[
    bool,
    typer.Option(
        "--password-stdin",
        help="Read the password from the first line of stdin instead of asking for it.",
    ),
]
ACTOR = "cli"


def _password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            fail("--password-stdin: nothing on stdin")
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        fail("no terminal to ask for the password: use --password-stdin")
    password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


@app.command("create-user")
def create_user_command(
    name: UserName,
    role: Annotated[str, typer.Option(help="owner (everything) or staff (orders).")],
    password_stdin: PasswordStdin = False,
) -> None:
    """Create an account that can log in to the staff console."""
    with open_app() as app:
        chosen = parse_role(role)
        user = create_user(
            app.database,
            name=name,
            role=chosen,
            password=_password(password_stdin),
            clock=app.clock,
            actor=ACTOR,
        )
    print_json(StaffUserView.of(user).json_dict())


@app.command("list-users")
def list_users_command() -> None:
    """Every account, by name."""
    with open_app() as app:
        users = list_users(app.database)
    print_json([StaffUserView.of(user).json_dict() for user in users])


def _set_disabled(name: str, *, disabled: bool) -> None:
    with open_app() as app:
        user = set_disabled(app.database, name, disabled=disabled, clock=app.clock, actor=ACTOR)
    print_json(StaffUserView.of(user).json_dict())


@app.command("disable-user")
def disable_user_command(name: UserName) -> None:
    """Disable an account: it can no longer log in, and its sessions end."""
    _set_disabled(name, disabled=True)


@app.command("enable-user")
def enable_user_command(name: UserName) -> None:
    """Enable a disabled account again."""
    _set_disabled(name, disabled=False)


@app.command("set-password")
def set_password_command(name: UserName, password_stdin: PasswordStdin = False) -> None:
    """Give an account a new password; its sessions end."""
    with open_app() as app:
        user = set_password(
            app.database, name, password=_password(password_stdin), clock=app.clock, actor=ACTOR
        )
    print_json(StaffUserView.of(user).json_dict())

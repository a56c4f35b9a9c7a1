"""What the CLI commands share: opening the database from the settings, printing JSON, showing
amounts and times, the typed arguments and options every command validates the same way, and
turning refused input into one `error: ...` line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import enum
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from khqrpay.orders.model import MAX_ID, OrderError
from khqrpay.orders.model import staff_actor as actor_of_staff

if TYPE_CHECKING:
    from khqrpay.bootstrap import App

USAGE_ERROR = 2


def _echo_error(message: str) -> None:
    """`error: <message>` as one line that any terminal can print: line breaks become spaces,
    and characters that are not text (undecodable bytes of an argument) are escaped."""
    line = " ".join(message.split())
    typer.echo(f"error: {line.encode('utf-8', 'backslashreplace').decode('utf-8')}", err=True)


def fail(message: str) -> NoReturn:
    _echo_error(message)
    raise typer.Exit(USAGE_ERROR)


Reason = Annotated[str, typer.Option(help="Why, for the audit trail (required).")]


def print_json(value: object) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False))


# -- Refused arguments and options: one line, exit 2 ---------------------------------------------


def _undecodable_argument(arguments: Sequence[str]) -> str | None:
    """Which argument held bytes that are not UTF-8 (Python keeps them as lone surrogates), if
    one did: a name or a reason must reach the database as text."""
    for position, argument in enumerate(arguments):
        try:
            argument.encode("utf-8")
        except UnicodeEncodeError:
            option, equals, _value = argument.partition("=")
            previous = arguments[position - 1] if position else ""
            if equals and option.startswith("--"):
                return f"the value of {option}"
            if previous.startswith("-"):
                return f"the value of {previous}"
            return f"argument {position + 1}"
    return None


def _click_error_message(error: Exception) -> str | None:
    """The message of one of click's errors (a bad argument, a missing option...), or None for
    any other exception. Typer vendors click privately, so its errors are recognised by what
    they carry, a `format_message()` and an `exit_code`, not by their classes."""
    format_message = getattr(error, "format_message", None)
    if not callable(format_message) or not isinstance(getattr(error, "exit_code", None), int):
        return None
    message = str(format_message())
    if type(error).__name__ == "NoSuchOption":
        message += " (an argument that starts with '-' goes after '--')"
    command_path = getattr(getattr(error, "ctx", None), "command_path", None)
    if command_path:
        message += f"; see '{command_path} --help'"
    return message


class OneLineErrorsGroup(TyperGroup):
    """The root command (`typer.Typer(cls=OneLineErrorsGroup)`): runs the command line as typer
    does, except that a refused argument or option, an argument that is not UTF-8, and a file or
    port that cannot be used are one `error: ...` line and exit 2 (1 for other click errors),
    like every other refusal, instead of a usage text, a box or a traceback. Set on the root,
    it covers every command below it, including those added later."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(
                args, prog_name, complete_var, standalone_mode, windows_expand_args, **extra
            )
        arguments = sys.argv[1:] if args is None else list(args)
        undecodable = _undecodable_argument(arguments)
        if undecodable is not None:
            _echo_error(f"{undecodable} is not UTF-8 text")
            sys.exit(USAGE_ERROR)
        try:
            code = super().main(
                arguments, prog_name, complete_var, False, windows_expand_args, **extra
            )
        except typer.Abort:
            _echo_error("aborted")
            sys.exit(1)
        except OSError as error:  # a file or port the command was told to use
            where = f": {error.filename}" if error.filename else ""
            _echo_error(f"{error.strerror or error}{where}")
            sys.exit(USAGE_ERROR)
        except Exception as error:
            message = _click_error_message(error)
            if message is None:
                raise
            # With `no_args_is_help`, typer has printed the help already.
            if type(error).__name__ != "NoArgsIsHelpError":
                _echo_error(message)
            sys.exit(getattr(error, "exit_code", USAGE_ERROR))
        # Without standalone mode typer returns the code of a `typer.Exit`, or the command's
        # own return value (None: the commands return nothing).
        sys.exit(code if isinstance(code, int) else 0)


def id_argument(help: str) -> Any:
    """A database id: 1 to the largest a row can have; anything else is refused before a query
    (a larger number would overflow the column in the driver)."""
    return typer.Argument(min=1, max=MAX_ID, help=help, show_default=False)


OrderId = Annotated[int, id_argument("The order's id.")]


def _staff_name(name: str | None) -> str | None:
    if name is not None:
        try:
            actor_of_staff(name)
        except OrderError as exc:
            raise typer.BadParameter(str(exc)) from None
    return name


Staff = Annotated[
    str | None,
    typer.Option(
        help="Who acts, for the audit trail (recorded as staff:NAME; default: cli).",
        callback=_staff_name,
    ),
]


def staff_actor(staff: str | None) -> str:
    """The audit trail's actor for `--staff NAME`: `staff:NAME`, or `cli` without one."""
    return "cli" if staff is None else actor_of_staff(staff)


STDIN = "-"
# Far more than any KHQR string (a few hundred characters); stops a runaway pipe.
MAX_STDIN_BYTES = 64 * 1024


def _text_or_stdin(value: str) -> str:
    """`-` stands for the text on stdin (without the line break `echo` adds)."""
    if value != STDIN:
        return value
    data = typer.get_binary_stream("stdin").read(MAX_STDIN_BYTES + 1)
    if len(data) > MAX_STDIN_BYTES:
        raise typer.BadParameter(f"more than {MAX_STDIN_BYTES} bytes on stdin")
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise typer.BadParameter("stdin is not UTF-8 text") from None
    if not text:
        raise typer.BadParameter("nothing on stdin")
    return text


QrText = Annotated[
    str,
    typer.Argument(
        help="The KHQR string, or - to read it from stdin.",
        callback=_text_or_stdin,
        show_default=False,
    ),
]


class LogLevel(enum.StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


LogLevelOption = Annotated[LogLevel, typer.Option(case_sensitive=False, help="How much to log.")]


# The errors a command refuses with one line, as (module, class): looked up only among the modules
# the command has imported (an exception of a class never imported cannot be raised), so this file
# imports neither the database, the settings nor the services, and `--help` stays light.
_REFUSED = (
    ("khqrpay.orders.model", "OrderError"),
    ("khqrpay.accounts", "AccountError"),
    ("khqrpay.money", "MoneyError"),
    ("khqrpay.khqr.errors", "KHQRError"),
    ("khqrpay.db.engine", "DatabaseError"),
    ("khqrpay.settings", "SettingsError"),
    ("khqrpay.services.webhooks", "WebhookError"),
)
_DRIVER_REFUSED = (("sqlalchemy.exc", "OperationalError"),)


def _imported(classes: Sequence[tuple[str, str]]) -> tuple[type[BaseException], ...]:
    return tuple(
        getattr(sys.modules[module], name) for module, name in classes if module in sys.modules
    )


@contextmanager
def reported_errors() -> Iterator[None]:
    """Input or state the command refuses becomes `error: ...` on stderr and exit code 2."""
    try:
        yield
    except Exception as exc:
        if isinstance(exc, _imported(_REFUSED)):
            fail(str(exc))
        if isinstance(exc, _imported(_DRIVER_REFUSED)):
            # The driver's message names the problem; the statement and parameters are left out.
            orig = getattr(exc, "orig", exc)
            fail(f"database error: {str(orig).strip().splitlines()[0]}")
        raise


@contextmanager
def open_app(*, migrated: bool = True) -> Iterator[App]:
    """The app's parts from the settings (the database refused unless at the latest schema when
    `migrated`); inside `reported_errors`."""
    # Imported when a command opens the app: `--help` needs none of it.
    from khqrpay.bootstrap import bootstrap

    with reported_errors(), bootstrap(migrated=migrated) as app:
        yield app

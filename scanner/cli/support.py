"""Run-time helpers of the command line: the progress bar's lifetime, a closed stdout, the hard
stop behind --timeout. Kept apart from :mod:`scanner.cli` so that the commands stay thin.
"""

from __future__ import annotations

import _thread
import contextlib
import io
import logging
import os
import re
import signal
import sys
import threading
import traceback

import typer
from typer.core import TyperCommand, TyperGroup

from .._validation import check_number
from ..errors import ScannerError
from .options import PREP, Signalled, interrupted

log = logging.getLogger("scanner")

_state: dict[str, bool] = {"quiet": False, "verbose": False}  # set by the -q/-v callback

INTERNAL_ERROR = 3  # exit status of a bug in the scanner (0 passed, 1 gate failed, 2 usage/model/input)
_VERBOSITY = re.compile(r"-[qv]+|--quiet|--verbose")
# The framework's own error base, which it prints itself (a usage error): click.ClickException
# up to typer 0.27, the copy inside typer (typer._click) from 0.28; found by name so that every
# typer the dependency range allows works without importing click.
_FRAMEWORK_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def _options_taking_a_value(command) -> set[str]:
    """The option strings of ``command`` that take a value (``-o``, ``--threshold``...).

    Duck-typed on purpose: typer up to 0.27 builds its options on the ``click`` package, 0.28
    on a copy of click inside typer (``typer._click``), so an ``isinstance`` test against either
    class would be silently false on the other and this set silently empty."""
    return {o for p in getattr(command, "params", ())
            if getattr(p, "param_type_name", "") == "option" and not p.is_flag and not p.count
            for o in (*p.opts, *p.secondary_opts)}


# one line under a help panel's heading, said once instead of on each of its options
PANEL_NOTES = {
    PREP: "Override the spec file and the model's metadata. Unset: from --spec, else the model's "
          "metadata or graph, else guessed (scanner inspect says which).",
}
_TYPE_METAVARS = {"str": "TEXT", "text": "TEXT", "int": "INTEGER", "integer": "INTEGER", "float": "FLOAT",
                  "path": "PATH", "file": "FILE", "filename": "FILE"}


def _metavar(param) -> str:
    """An upper-case metavar, the same under every typer the dependency range allows (0.28 writes
    ``<str>``, ``<int range>``); choices as ``[a|b]``, as click writes them."""
    choices = getattr(param.type, "choices", None)
    if choices:
        return "[" + "|".join(str(getattr(c, "value", c)) for c in choices) + "]"
    name = str(getattr(param.type, "name", "text")).strip("<>").split()[0].lower()
    return _TYPE_METAVARS.get(name, name.upper())


class _Command(TyperCommand):
    """One help style for every command: plain text (no boxes; CI logs, pipes), the options in
    their panels (``rich_help_panel``: Preprocessing, CI gate, Scaling out), upper-case metavars,
    arguments named in upper case in the usage line (``scanner scan [OPTIONS] MODEL PATHS...``)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs["rich_markup_mode"] = None
        super().__init__(*args, **kwargs)
        for param in self.params:
            if getattr(param, "param_type_name", "") == "argument":
                if param.metavar is None:
                    param.metavar = (param.name or "").upper() + ("..." if param.nargs != 1 else "")
            elif param.metavar is None and not getattr(param, "is_flag", False) and not getattr(param, "count", False):
                param.metavar = _metavar(param)

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if getattr(param, "param_type_name", "") == "argument":
                pieces.append(param.metavar if param.required else f"[{param.metavar}]")
        return pieces

    def format_options(self, ctx, formatter) -> None:
        arguments = [(p.metavar, p.help or "") for p in self.get_params(ctx)
                     if getattr(p, "param_type_name", "") == "argument"]
        if arguments:
            with formatter.section("Arguments"):
                formatter.write_dl(arguments)
        panels: dict[str, list] = {"Options": []}
        for param in self.get_params(ctx):
            if getattr(param, "param_type_name", "") == "argument":
                continue
            record = param.get_help_record(ctx)
            if record is not None:
                panels.setdefault(getattr(param, "rich_help_panel", None) or "Options", []).append(record)
        parent = ctx.parent
        if parent is not None:  # -q/-v: the group's, accepted after the command too (parse_args)
            panels["Output"] = [r for p in parent.command.get_params(parent) if p.name in ("quiet", "verbose")
                                if (r := p.get_help_record(parent)) is not None]
        for title, records in panels.items():
            if records:
                with formatter.section(title):
                    if title in PANEL_NOTES:
                        formatter.write_text(PANEL_NOTES[title])
                    formatter.write_dl(records)


class _Commands(TyperGroup):
    """The command group; ``export`` (in ``exporters/``) is added only when it is asked for, so
    that ``scanner scan`` never imports ``exporters``."""

    def _add_export(self) -> None:
        if "export" in self.commands:
            return
        try:
            from exporters.cli import export_command
        except ImportError:  # exporters not installed alongside: no export command
            return
        holder = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
        holder.command("export", cls=_Command, help=export_command.__doc__)(export_command)
        self.add_command(typer.main.get_command(holder), "export")

    def list_commands(self, ctx) -> list[str]:
        self._add_export()
        return super().list_commands(ctx)

    def get_command(self, ctx, cmd_name: str):
        if cmd_name == "export":
            self._add_export()
        return super().get_command(ctx, cmd_name)

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        """``-q``/``-v`` anywhere: the ones after the subcommand move in front of it (a value of an
        option that takes one, and everything after ``--``, stay where they are)."""
        args = list(args)
        sub = next((i for i, a in enumerate(args) if not a.startswith("-")), None)
        # self.commands, not list_commands(): listing them loads `export`, and with it exporters
        if sub is not None and (args[sub] in self.commands or args[sub] == "export"):
            command = self.get_command(ctx, args[sub])
            takes_value = _options_taking_a_value(command)
            moved, kept, i = [], args[:sub + 1], sub + 1
            while i < len(args):
                a = args[i]
                if a == "--":
                    kept.extend(args[i:])
                    break
                if _VERBOSITY.fullmatch(a):
                    moved.append(a)
                else:
                    kept.append(a)
                    if a in takes_value and i + 1 < len(args):
                        kept.append(args[i + 1])
                        i += 1
                i += 1
            args = moved + kept if moved else args
        return super().parse_args(ctx, args)

    def invoke(self, ctx):
        """Every command's errors, in one place: a library error is one line and exit 2; anything
        else is a bug in the scanner: one line saying so and exit 3 (the traceback with -v)."""
        try:
            with _signals_interrupt():
                return super().invoke(ctx)
        except ScannerError as exc:
            typer.echo(f"Error: {exc}", err=True)
            raise typer.Exit(2) from None
        except (_FRAMEWORK_ERROR, typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt as exc:
            raise interrupted(exc) from None
        except Exception as exc:  # noqa: BLE001 - the last line of defence
            if _state["verbose"]:
                traceback.print_exc()
            text = " ".join(str(exc).split())[:200]
            typer.echo(f"Error: internal error, a bug in the scanner ({type(exc).__name__}{': ' + text if text else ''}); "
                       "please report it" + ("" if _state["verbose"] else "; rerun with -v for the traceback"), err=True)
            raise typer.Exit(INTERNAL_ERROR) from None




@contextlib.contextmanager
def _signals_interrupt():
    """SIGTERM and SIGHUP end a command as Ctrl-C does: a KeyboardInterrupt in the main thread
    (:class:`Signalled`), so a report being written is not left as a temporary file, and one
    'Interrupted (SIGTERM)' line with exit 143 (129 for SIGHUP). The handlers are the process's
    only while the command runs (in-process callers get theirs back)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Signalled(signum)

    previous = {}
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None:
            try:
                previous[sig] = signal.signal(sig, handler)
            except (ValueError, OSError):  # not settable here
                pass
    try:
        yield
    finally:
        for sig, old in previous.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(sig, old if old is not None else signal.SIG_DFL)


HARD_STOP_GRACE = 3.0  # seconds past --timeout before a run stuck inside the model is ended


@contextlib.contextmanager
def _hard_stop_after(timeout: float | None):
    """The last guarantee of --timeout: a run still going ``HARD_STOP_GRACE`` seconds after the
    limit (a model that never returns while it is loaded and verified) ends with exit 2.

    As its own process the command ends there (``os._exit``). Run in-process (a test runner or a
    notebook calling the app: stdout is not the process's), it must not end its host: the main
    thread gets an interrupt instead, which ends the command with exit 2 when it returns."""
    if timeout is None:
        yield
        return
    timeout = check_number(timeout, "--timeout", lo=0.0, lo_open=True)  # NaN passes click's min=
    fired = threading.Event()

    def stop() -> None:
        fired.set()
        sys.stderr.write(f"Error: --timeout: still running {timeout + HARD_STOP_GRACE:g} s after the start "
                         "(the model did not return); stopped, nothing was reported\n")
        sys.stderr.flush()
        if sys.stdout is sys.__stdout__:
            os._exit(2)
        _thread.interrupt_main()

    timer = threading.Timer(timeout + HARD_STOP_GRACE, stop)
    timer.daemon = True
    timer.start()
    try:
        yield
    except KeyboardInterrupt:
        if fired.is_set():
            raise typer.Exit(2) from None
        raise
    finally:
        timer.cancel()


@contextlib.contextmanager
def _progress(enabled: bool, label: str):
    """A progress bar on stderr when it is a terminal (done/total, rate, elapsed, ETA); None when
    piped or quiet."""
    from ..report.terminal import ProgressBar, is_terminal

    if not enabled or not is_terminal(sys.stderr):
        yield None
        return
    bar = ProgressBar(label)
    try:
        yield bar
    finally:
        bar.clear()


@contextlib.contextmanager
def _closed_pipe_ends_quietly():
    """A reader that stops reading (``scanner scan ... | head -3``) ends the scan: nothing more is
    written, no traceback, exit 0 (the reader chose to stop; no gate was decided)."""
    try:
        yield
    except BrokenPipeError:
        _stdout_closed()
        raise typer.Exit(0) from None


def _stdout_closed() -> None:
    """The process's stdout was closed by its reader: stop now (exit 0), without waiting for the
    decoding in flight. In-process (a test runner's stdout) it returns and the caller unwinds."""
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return
    if fd != 1:
        return
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    os._exit(0)


def _streaming(writer):
    """``writer.add`` for :meth:`Scanner.scan`'s ``on_batch``: a closed stdout ends the process at once."""
    def add(chunk, first):
        log.debug("batch of inputs %d-%d done: %d scored", first, first + chunk.n_found - 1, chunk.n_scored)
        try:
            writer.add(chunk, first)
        except BrokenPipeError:
            _stdout_closed()
            raise
    return add


def _lift(bar):
    """Take the progress bar off the terminal line while rows are written there."""
    @contextlib.contextmanager
    def around():
        bar.clear()
        try:
            yield
        finally:
            bar.redraw()
    return around

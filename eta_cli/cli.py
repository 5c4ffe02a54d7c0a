"""The ``eta`` command line: one thin subcommand per lifecycle step.

Each subcommand lives in ``eta_cli/commands/<step>.py`` and only parses options,
builds :class:`~eta_cli.config.Settings` and calls the library module of its step.
"""

from __future__ import annotations

import sys

import typer

from eta_cli import __version__, config
from eta_cli.errors import EtaError
from eta_cli.redact import redact_text


def _version(value: bool) -> None:
    if value:
        typer.echo(f"eta {__version__}")
        raise typer.Exit()


def build_app() -> typer.Typer:
    """Assemble the CLI; command modules import their heavy libraries lazily."""
    from eta_cli.commands import config as config_cmd
    from eta_cli.commands.options import EtaCommand, EtaGroup

    app = typer.Typer(
        name="eta",
        cls=EtaGroup,
        help="The ML lifecycle of a food-delivery ETA model: ingest, train, register, "
        "monitor drift, serve.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    @app.callback()
    def root(
        ctx: typer.Context,
        profile: str | None = typer.Option(
            None,
            "--profile",
            "-p",
            help="Config profile: configs/<profile>.toml "
            "(local, aws). Default: $ETA_PROFILE or local.",
            show_default=False,
        ),
        home: str | None = typer.Option(
            None,
            "--home",
            help="Folder for the embedded default (MLflow, data, reports). "
            "Default: $ETA_HOME or ~/.eta.",
            show_default=False,
        ),
        version: bool = typer.Option(
            False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ) -> None:
        ctx.obj = {"profile": profile, "home": home}

    app.add_typer(config_cmd.app, name="config")
    from eta_cli.commands import ingest as ingest_cmd

    app.command("ingest", cls=EtaCommand, help=ingest_cmd.HELP)(ingest_cmd.ingest_command)
    from eta_cli.commands import synthetic as synthetic_cmd

    app.command("synthetic", cls=EtaCommand, help=synthetic_cmd.HELP)(
        synthetic_cmd.synthetic_command
    )
    from eta_cli.commands import predict as predict_cmd
    from eta_cli.commands import serve as serve_cmd

    app.command("serve", cls=EtaCommand, help=serve_cmd.HELP)(serve_cmd.serve_command)
    app.command("predict", cls=EtaCommand, help=predict_cmd.HELP)(predict_cmd.predict_command)
    from eta_cli.commands import register as register_cmd
    from eta_cli.commands import train as train_cmd

    app.command("train", cls=EtaCommand, help=train_cmd.HELP)(train_cmd.train_command)
    app.command("register", cls=EtaCommand, help=register_cmd.HELP)(register_cmd.register_command)
    from eta_cli.commands import drift as drift_cmd

    app.command("drift-report", cls=EtaCommand, help=drift_cmd.HELP)(drift_cmd.drift_report_command)
    from eta_cli.commands import evaluate as evaluate_cmd

    app.command("evaluate", cls=EtaCommand, help=evaluate_cmd.HELP)(evaluate_cmd.evaluate_command)
    from eta_cli.commands import pipeline as pipeline_cmd

    app.command("pipeline", cls=EtaCommand, help=pipeline_cmd.HELP)(pipeline_cmd.pipeline_command)
    from eta_cli.commands import doctor as doctor_cmd

    app.command("doctor", cls=EtaCommand, help=doctor_cmd.HELP)(doctor_cmd.doctor_command)
    from eta_cli.commands import ui as ui_cmd

    app.command("ui", cls=EtaCommand, help=ui_cmd.HELP)(ui_cmd.ui_command)
    return app


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning expected failures into a message and an exit code."""
    debug = config.debug_requested()
    if not debug:
        # MLflow's INFO lines (database migrations on first use) are not ours to print;
        # read when mlflow is first imported, which is later than this.
        config.export_default("MLFLOW_LOGGING_LEVEL", "WARNING")
    app = build_app()
    try:
        result = app(args=argv, standalone_mode=False)
    except EtaError as exc:
        typer.secho(f"error: {redact_text(str(exc))}", fg=typer.colors.RED, err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.secho("interrupted", fg=typer.colors.YELLOW, err=True)
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:  # last resort: a message, not a traceback
        import click

        # Usage errors from click or from Typer's vendored copy of it (Typer >= 0.29),
        # whose classes do not derive from click's: both have show() and exit_code.
        code = getattr(exc, "exit_code", None)
        if callable(getattr(exc, "show", None)) and isinstance(code, int):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, (click.exceptions.Abort, typer.Abort)):
            typer.secho("aborted", err=True)
            sys.exit(130)
        if debug:
            raise
        typer.secho(
            f"internal error: {type(exc).__name__}: {redact_text(str(exc))} "
            "(set ETA_DEBUG=1 for the traceback)",
            fg=typer.colors.RED,
            err=True,
        )
        sys.exit(1)
    sys.exit(result if isinstance(result, int) else 0)

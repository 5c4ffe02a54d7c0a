"""``eta ui``: Evidently's monitoring UI on the workspace the drift reports fill."""

from __future__ import annotations

import typer

from eta_cli.commands._common import console, err_console, settings_from

HELP = """Open the drift and live-quality dashboard: Evidently's UI on the workspace.

Every `eta drift-report` (and `eta pipeline` run) adds a run to the model's project in \
the Evidently workspace (ETA_WORKSPACE, default ETA_HOME/workspace); this starts \
Evidently's UI on it and prints the project's address. Ctrl-C stops it.

\b
Also prints how to open MLflow on the configured tracking store; --mlflow starts
MLflow's UI too (on 127.0.0.1).

\b
Exit codes:
  0  stopped by Ctrl-C / SIGTERM
  1  a UI stopped on its own or never started listening
  2  no workspace or no report yet, busy port, bad option
"""


def ui_command(
    ctx: typer.Context,
    host: str = typer.Option(
        "127.0.0.1",
        "--host",
        help="Interface to listen on. The UI has no login: keep it on loopback and reach "
        "it through an SSH tunnel (0.0.0.0 only inside a container).",
    ),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="Port of Evidently's UI."),
    mlflow: bool = typer.Option(
        False, "--mlflow", help="Also start MLflow's UI on the tracking store, on 127.0.0.1."
    ),
    mlflow_port: int = typer.Option(
        5000, "--mlflow-port", min=1, max=65535, help="Port of MLflow's UI with --mlflow."
    ),
) -> None:
    from eta_cli.monitor import ui, workspace

    settings = settings_from(ctx)
    project = workspace.find_project(settings)
    if project is None or project.runs == 0:
        what = "has no runs yet" if project else "has no project for this model"
        raise ui.UiError(
            f"the Evidently workspace {settings.effective_workspace} {what} "
            f"(model {settings.model_name!r}). Make the first report with `eta drift-report` "
            "(after `eta ingest`, `eta train` and `eta register`), or point ETA_WORKSPACE "
            "at the workspace the reports go to"
        )
    if mlflow and mlflow_port == port:
        raise ui.UiError(f"--mlflow-port {mlflow_port} is the UI's --port too: choose another")
    services = [ui.evidently_service(settings, host, port)]
    if mlflow:
        services.append(ui.mlflow_service(settings, mlflow_port))
    ui.check_port(host, port, "--port")
    if mlflow:
        ui.check_port("127.0.0.1", mlflow_port, "--mlflow-port")
    if host not in ui.LOOPBACK:
        err_console.print(
            f"[yellow]warning:[/yellow] listening on {host}: the UI has no login, anyone "
            "who reaches this port can read every report"
        )
    err_console.print(f"starting Evidently's UI on {project.workspace} ({project.runs} runs)...")

    def ready(service: ui.Service) -> None:
        if service is services[0]:
            console.print(
                f"Evidently UI: {service.url}/projects/{project.project_id}", soft_wrap=True
            )
            if not mlflow:
                console.print(ui.mlflow_hint(settings, mlflow_port))
        else:
            console.print(f"MLflow UI: {service.url}", soft_wrap=True)
        console.file.flush()

    code = ui.run(services, ready)
    err_console.print("stopped")
    raise typer.Exit(code)

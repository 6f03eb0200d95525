"""`stylealign`: a thin typer layer over the library; every command calls one library function."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

app = typer.Typer(help="Build, measure and train on style-aligned distillation data.", no_args_is_help=True)
lab_app = typer.Typer(help="The built-in lab: a math world, a small student and a programmatic oracle.")
app.add_typer(lab_app, name="lab")
console = Console()

CONFIGS_DIR = Path(__file__).resolve().parents[2] / "configs"


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(1)


@app.command()
def run(
    config: Path = typer.Argument(..., exists=True, dir_okay=False, help="experiment YAML"),
    out: Path = typer.Option(Path("runs/experiment"), "--out", "-o", help="run directory (resumed if it exists)"),
    only: str | None = typer.Option(None, help="run just this stage"),
    until: str | None = typer.Option(None, help="stop after this stage"),
    streams: str | None = typer.Option(None, help="comma-separated streams, e.g. rft,sar"),
    limit: int | None = typer.Option(None, help="use at most this many problems"),
) -> None:
    """Run (or resume) an experiment: load, sample, streams, score, train, evaluate, report."""
    from stylealign.config import ConfigError, load_config
    from stylealign.pipeline import run_experiment

    try:
        cfg = load_config(config)
        selected = tuple(s.strip() for s in streams.split(",") if s.strip()) if streams else None
        run_experiment(cfg, out, only=only, until=until, streams=selected, limit=limit, console=console)
    except (ConfigError, ValueError, FileNotFoundError) as err:
        _fail(str(err))


@app.command()
def demo(out: Path = typer.Option(Path("runs/demo"), "--out", "-o")) -> None:
    """The whole experiment on the built-in lab, on CPU: `run configs/demo.yaml --out runs/demo`."""
    run(config=CONFIGS_DIR / "demo.yaml", out=out, only=None, until=None, streams=None, limit=None)


if __name__ == "__main__":
    app()

"""`stylealign`: a thin typer layer over the library; every command calls one library function."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

if TYPE_CHECKING:
    from stylealign.config import ExperimentConfig

app = typer.Typer(help="Build, measure and train on style-aligned distillation data.", no_args_is_help=True)
lab_app = typer.Typer(help="The built-in lab: a math world, a small student and a programmatic oracle.")
app.add_typer(lab_app, name="lab")
models_app = typer.Typer(help="Real models that install offline from the package registry (split GGUF files).")
app.add_typer(models_app, name="models")
console = Console()

def _fail(message: str) -> None:
    from rich.markup import escape

    console.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(1)


def _experiment(config: str) -> ExperimentConfig:
    """The experiment config a YAML path or packaged name gives, its streams' own settings checked (an error names
    the file and the dotted key)."""
    from stylealign.config import config_path, load_config
    from stylealign.streams.registry import check_stream_settings

    return check_stream_settings(load_config(config), str(config_path(config)))


@app.command()
def run(
    config: str = typer.Argument(..., help="experiment YAML, or a packaged config's name (demo, real-cpu, ...)"),
    out: Path = typer.Option(Path("runs/experiment"), "--out", "-o", help="run directory (resumed if it exists)"),
    only: str | None = typer.Option(None, help="run just this stage"),
    until: str | None = typer.Option(None, help="stop after this stage"),
    streams: str | None = typer.Option(None, help="comma-separated streams, e.g. rft,sar"),
    limit: int | None = typer.Option(None, help="use at most this many problems"),
    allow_failures: bool = typer.Option(
        False, help="go on when a stream got no data because its oracle failed (default: stop with an error)"
    ),
) -> None:
    """Run (or resume) an experiment: load, sample, streams, score, train, evaluate, report."""
    from stylealign.engines import EngineError
    from stylealign.pipeline import run_experiment

    try:
        cfg = _experiment(config)
        selected = tuple(s.strip() for s in streams.split(",") if s.strip()) if streams else None
        run_experiment(
            cfg, out, only=only, until=until, streams=selected, limit=limit, console=console,
            allow_failures=allow_failures,
        )
    except (ValueError, OSError, EngineError) as err:
        _fail(str(err))


@app.command()
def demo(out: Path = typer.Option(Path("runs/demo"), "--out", "-o")) -> None:
    """The whole experiment on the built-in lab, on CPU: `run demo --out runs/demo` (the packaged config)."""
    run(config="demo", out=out, only=None, until=None, streams=None, limit=None, allow_failures=False)


@app.command()
def serve(
    model: str = typer.Argument(..., help="model dir, hub id, gguf:PATH, package:NAME, lab:student or lab:oracle"),
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    port: int = typer.Option(8000, help="port to listen on"),
    name: str | None = typer.Option(None, help="model name clients send (default: MODEL)"),
    device: str = typer.Option("auto", help="cpu, cuda, cuda:1, ... (hf engine)"),
    dtype: str = typer.Option("auto", help="auto, float32, bfloat16, float16 (hf engine)"),
    batch_size: int = typer.Option(16, help="sequences per forward pass (hf engine)"),
    api_key_env: str | None = typer.Option(None, help="require `Authorization: Bearer $NAME` from clients"),
    insecure: bool = typer.Option(False, help="allow a non-loopback --host without --api-key-env"),
    max_n: int = typer.Option(16, min=1, help="most samples one request may ask for"),
    max_tokens: int = typer.Option(4096, min=1, help="most tokens one request may ask to generate"),
    max_body_bytes: int = typer.Option(1_000_000, min=1, help="largest request body (larger: 413)"),
    max_prompt_tokens: int = typer.Option(8192, min=1, help="longest prompt, in tokens"),
    max_prompts: int = typer.Option(32, min=1, help="most prompts one completions request may send"),
    max_completions: int = typer.Option(64, min=1, help="most completions one request may ask for (prompts x n)"),
) -> None:
    """Serve MODEL over an OpenAI-compatible HTTP API (chat, completions with echo/logprobs, models)."""
    from stylealign.engines import EngineError
    from stylealign.server import ServerLimits
    from stylealign.server import serve as serve_model

    limits = ServerLimits(
        max_n=max_n, max_tokens=max_tokens, max_body_bytes=max_body_bytes, max_prompt_tokens=max_prompt_tokens,
        max_prompts=max_prompts, max_completions=max_completions,
    )
    try:
        serve_model(
            model, host=host, port=port, name=name, api_key_env=api_key_env, insecure=insecure, limits=limits,
            device=device, dtype=dtype, batch_size=batch_size,
        )
    except (ValueError, OSError, EngineError) as err:
        _fail(str(err))


@app.command()
def rehearse(
    config: str = typer.Argument("rehearsal", help="experiment YAML, or a packaged config's name"),
    out: Path = typer.Option(Path("runs/rehearsal"), "--out", "-o", help="run directory (resumed if it exists)"),
    limit: int | None = typer.Option(None, help="use at most this many problems per source"),
) -> None:
    """Run the config with its oracle served on its loopback port (failures allowed); counts in rehearsal.json."""
    from stylealign.engines import EngineError
    from stylealign.rehearsal import rehearse as run_rehearsal

    try:
        run_rehearsal(_experiment(config), out, limit=limit, console=console)
    except (ValueError, OSError, EngineError) as err:
        _fail(str(err))


@app.command()
def grade(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="predictions: .jsonl, .json, .parquet or .csv"),
    reference_field: str = typer.Option(..., help="field holding the reference answer (or a solution with ####/boxed)"),
    prediction_field: str = typer.Option(..., help="field holding the model output"),
    out: Path | None = typer.Option(None, "--out", "-o", help="write per-row verdicts here (JSONL)"),
    timeout: float = typer.Option(5.0, help="seconds per item before its worker is killed (above 0)"),
    processes: int | None = typer.Option(None, min=1, help="grading worker processes (default: CPU count)"),
    last_number: bool = typer.Option(True, help="fall back to the last number when no final answer is marked"),
    skip_bad: bool = typer.Option(False, help="skip malformed rows instead of stopping"),
) -> None:
    """Grade model outputs against reference answers; print accuracy, write per-row verdicts."""
    from rich.markup import escape

    from stylealign.grade_files import grade_file

    if not timeout > 0:
        _fail(f"--timeout {timeout:g}: must be above 0 seconds")
    try:
        result = grade_file(
            file,
            reference_field=reference_field,
            prediction_field=prediction_field,
            out=out,
            timeout=timeout,
            processes=processes,
            last_number=last_number,
            skip_bad=skip_bad,
        )
    except (ValueError, OSError) as err:
        _fail(str(err))
    if not result.rows:
        _fail(f"{file}: no rows to grade")
    for skipped in result.skipped:
        console.print(f"[yellow]skipped[/] {escape(skipped.location)}: {escape(skipped.reason)}")
    if result.timed_out or result.failed:
        console.print(f"[yellow]{result.timed_out} timed out, {result.failed} failed (counted as wrong)[/]")
    console.print(f"accuracy={result.accuracy:.4f} ({result.correct}/{len(result.rows)})")
    if out is not None:
        console.print(f"verdicts: {out}")


@app.command()
def export(
    run_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="a run directory"),
    stream: str = typer.Option(..., help="stream to export, e.g. rft or sar"),
    out: Path = typer.Option(..., "--out", "-o", help="output folder: train.jsonl, dataset_info.json, dataset/"),
    force: bool = typer.Option(False, help="overwrite an earlier export in --out"),
) -> None:
    """Export a stream as chat JSONL (TRL / LLaMA-Factory) and a Hugging Face dataset directory."""
    from stylealign.streams.export import export_run

    try:
        result = export_run(run_dir, stream, out, force=force)
    except (ValueError, OSError) as err:
        _fail(str(err))
    console.print(f"exported {result['examples']} examples: {result['jsonl']}, {result['dataset']}")


@app.command()
def report(
    run_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="a run directory"),
    rebuild: bool = typer.Option(True, "--rebuild/--no-rebuild", help="rebuild the report from the run's records first"),
    open_page: bool = typer.Option(False, "--open", help="open report.html in the web browser"),
    serve_page: bool = typer.Option(False, "--serve", help="serve the report on 127.0.0.1 until Ctrl-C"),
    port: int = typer.Option(8765, min=0, max=65535, help="port for --serve (0: any free port)"),
) -> None:
    """Build the report of an existing run (tables, figures, trace browser) and open or serve it."""
    import webbrowser

    from stylealign.engines import EngineError
    from stylealign.pipeline import report_run
    from stylealign.report.serve import open_report, report_page, report_server

    try:
        page = report_run(run_dir, console=console) if rebuild else report_page(run_dir)
        server = report_server(run_dir, port) if serve_page else None
        if open_page and server is None:
            open_report(run_dir)
    except (ValueError, OSError, EngineError) as err:
        _fail(str(err))
    if not rebuild:
        console.print(f"HTML report: [bold]{page.resolve()}[/]")
    if server is not None:
        host, bound = server.server_address[:2]
        url = f"http://{host}:{bound}/"
        console.print(f"serving the report at [bold]{url}[/] (Ctrl-C to stop)")
        if open_page:
            webbrowser.open(url)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()


@models_app.command("list")
def models_list() -> None:
    """The registered models and pairs: packages, size, licence, source."""
    from stylealign.known_models import KNOWN_MODELS, PAIRS

    for m in KNOWN_MODELS.values():
        size = f"{m.size:,} bytes" if m.size else "size unregistered"
        console.print(f"{m.name}: {m.description}; {m.parts} package(s) {m.requirements()[0]}...; {size}; {m.licence}; {m.source}",
                      soft_wrap=True)
    for pair, members in PAIRS.items():
        console.print(f"{pair}: the pair {' + '.join(members)}")


@models_app.command("install")
def models_install(name: str = typer.Argument(..., help="a registered model or pair (`stylealign models list`)")) -> None:
    """pip-install a registered model's packages (--no-deps), assemble and check its GGUF, convert it once."""
    import subprocess

    from stylealign.gguf import GGUFError
    from stylealign.known_models import install

    try:
        installed = install(name)
    except (GGUFError, subprocess.CalledProcessError, OSError) as err:
        _fail(str(err))
    for model, gguf_file, converted in installed:
        console.print(
            f"{model.name}: {gguf_file.stat().st_size:,} bytes checked ({model.parts} part(s)), sha256 "
            f"{model.sha256 or 'not registered'}; licence {model.licence}; source {model.source}\n"
            f"  GGUF {gguf_file}\n  model directory {converted}  (engine.model: known:{model.name})",
            soft_wrap=True,
        )


@app.command()
def contamination(
    config: str = typer.Argument(..., help="experiment YAML, or a packaged config's name"),
    problems: str | None = typer.Option(None, help="check this problem file (or source) instead of the config's problems"),
    limit: int | None = typer.Option(None, help="check at most this many problems per source"),
    examples: int = typer.Option(3, min=0, help="pairs shown per evaluation set"),
    out: Path | None = typer.Option(None, "--out", "-o", help="also write the report as JSON here"),
) -> None:
    """Training problems sharing a 13-gram with an evaluation question of the config, per evaluation set."""
    import json

    from stylealign.contamination import check_config, summary_lines

    try:
        found = check_config(_experiment(config), problems, limit, examples)
    except (ValueError, OSError) as err:
        _fail(str(err))
    for line in summary_lines(found):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    if out is not None:
        out.write_text(json.dumps(found, indent=2, ensure_ascii=False), encoding="utf-8")
        console.print(f"report: {out}")


@app.command()
def plan(
    config: str = typer.Argument(..., help="experiment YAML, or a packaged config's name"),
    limit: int | None = typer.Option(None, help="plan for at most this many problems per source (as run --limit)"),
    assume: list[str] = typer.Option([], help="NAME=VALUE overriding a printed assumption, e.g. sample_accuracy=0.3"),
    from_run: Path | None = typer.Option(None, help="an earlier run directory: time stages at its measured rates"),
    out: Path | None = typer.Option(None, "--out", "-o", help="also write the plan as JSON here"),
) -> None:
    """Requests and tokens per stage and engine before anything runs; time and cost at the config's rates."""
    import json

    from stylealign.plan import Assumptions, plan_config, plan_table
    from stylealign.usage import measured_rates

    try:
        overrides = {name.strip(): float(value) for name, _, value in (a.partition("=") for a in assume)}
        found = plan_config(_experiment(config), limit, Assumptions(**overrides), measured_rates(from_run) if from_run else None)
    except (ValueError, OSError, TypeError) as err:
        _fail(str(err))
    Console(width=max(console.width, 120), force_terminal=console.is_terminal).print(plan_table(found))
    console.print("assumptions:", style="bold")
    for line in found["assumptions"]:
        console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
    if found["timed_from_earlier_run"]:
        console.print(f"  timed at {from_run}'s measured rates: {', '.join(found['timed_from_earlier_run'])}", markup=False)
    if out is not None:
        out.write_text(json.dumps(found, indent=2), encoding="utf-8")
        console.print(f"plan: {out}")


@lab_app.command("pretrain")
def lab_pretrain(
    out: Path | None = typer.Option(None, "--out", "-o", help="also copy the model directory here"),
    name: str = typer.Option("student", help="which lab recipe"),
) -> None:
    """Pretrain the lab student on CPU (cached: a second run is instant) and print where it lives."""
    import json
    import shutil

    from stylealign.lab.student import ensure_student

    try:
        path = ensure_student(name, log=console.print)
    except ValueError as err:
        _fail(str(err))
    if out is not None:
        shutil.copytree(path, out, dirs_exist_ok=True)
        path = out
    info = json.loads((path / "recipe.json").read_text(encoding="utf-8"))
    console.print(f"student: {path} ({info['parameters']:,} parameters, pretrained in {info['seconds']}s)")


if __name__ == "__main__":
    app()

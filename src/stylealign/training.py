"""Fine-tune the student on one stream with TRL: the same budget rule for every stream, loss on the response only.

The budget (`training.budget`) is epochs over the stream's own examples (the
paper's one epoch), response tokens, or optimizer steps; every stream is
trained once per `training.seeds` entry, so the report can tell a stream's
effect from a seed's.

Examples are tokenized here, not by TRL, with `encode_prompt_response`, the
rule scoring and sampling use: the prompt is `render_prompt(tokenizer,
request)` (the one chat-template rule), the response is tokenized on its own
after it and closed with EOS, and every prompt token gets label -100. TRL
gets a pre-tokenized dataset and never re-applies a chat template.

A training run is keyed by its content (base model, examples, settings). Its
directory holds `checkpoints/` (resumed after a kill) and, once finished,
`model/`: a full model directory (LoRA adapters merged) that every engine
loads like any other model, with `stylealign_training.json` beside the weights
and `training_log.json`: TRL's log history (loss, learning rate, grad norm per
logging step; the trainer's own JSON format, read by the report with no extra
dependency). `training.report_to` also sends the same logs to TensorBoard,
wandb or mlflow for those who want them.

Under `torchrun` / `accelerate launch` (`stylealign run CFG --only train`)
training is data-parallel: `training.batch_size` stays the global batch, each
of the N processes takes batch_size / N of it and DDP averages the gradients,
so the budget counts the same optimizer steps as one process does. Process 0
alone prepares the directory and writes the model; the others wait for it.
"""

from __future__ import annotations

import gc
import json
import math
import os
import shutil
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from stylealign.config import BudgetConfig, EngineConfig, TrainingConfig
from stylealign.engines.base import Request, encode_prompt_response
from stylealign.progress import library_bars
from stylealign.records import content_id
from stylealign.store import StoreError

TRAINING_INFO = "stylealign_training.json"
TRAINING_LOG = "training_log.json"
IGNORE_INDEX = -100


def _quiet_progress() -> Any:
    """HF's progress bar with the latest loss as its postfix, instead of a printed dict per log step."""
    from transformers.trainer_callback import ProgressCallback

    class QuietProgress(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.training_bar is not None and logs and "loss" in logs:
                self.training_bar.set_postfix(loss=f"{float(logs['loss']):.4f}")

    return QuietProgress()


def encode_example(
    tokenizer: Any, request: Request, response: str, max_length: int | None = None
) -> dict[str, list[int]]:
    """`input_ids` as scoring tokenizes them (`encode_prompt_response`) + EOS; `labels` mask the prompt with -100."""
    ids, prompt_len = encode_prompt_response(tokenizer, request, response)
    input_ids = ids + [tokenizer.eos_token_id]
    labels = [IGNORE_INDEX] * prompt_len + input_ids[prompt_len:]
    if max_length is not None:
        input_ids, labels = input_ids[:max_length], labels[:max_length]
    return {"input_ids": input_ids, "labels": labels}


def training_key(base_model: str, examples: Sequence[tuple[Request, str]], cfg: TrainingConfig, seed: int) -> str:
    """Changes whenever the base model, the data, a setting or the seed changes, so stale checkpoints are never resumed.

    The list of seeds is left out (adding a seed must not retrain the others' models), and so are where logs go
    and gradient checkpointing, which changes memory and time, not the weights.
    """
    data = [(list(req.messages), req.prefix, response) for req, response in examples]
    settings = cfg.model_dump(mode="json", exclude={"seeds", "report_to", "gradient_checkpointing"})
    return content_id("train", str(base_model), settings, seed, content_id(data))


def steps_per_epoch(examples: int, cfg: TrainingConfig) -> int:
    """Optimizer steps in one pass over `examples` (the trainer's count: a short last batch still makes a step)."""
    return max(1, math.ceil(math.ceil(examples / cfg.batch_size) / cfg.gradient_accumulation_steps))


def budget_steps(budget: BudgetConfig, examples: int, response_tokens: int, cfg: TrainingConfig) -> int:
    """Optimizer steps that spend `budget` on a stream of `examples` holding `response_tokens` trained tokens."""
    if budget.steps is not None:
        return budget.steps
    epochs = budget.epochs if budget.epochs is not None else budget.tokens / max(1, response_tokens)
    return max(1, math.ceil(epochs * steps_per_epoch(examples, cfg)))


def finished_model(out_dir: str | Path, key: str | None = None) -> Path | None:
    """The trained model directory under `out_dir` if training finished (for `key`, when given)."""
    info = Path(out_dir) / "model" / TRAINING_INFO
    if not info.is_file():
        return None
    if key is not None and json.loads(info.read_text(encoding="utf-8")).get("key") != key:
        return None
    return info.parent


def _complete_checkpoint(out_dir: Path) -> Path | None:
    """The newest checkpoint whose trainer state was written (it is written last); partial ones are removed."""
    ckpt_root = out_dir / "checkpoints"
    if not ckpt_root.is_dir():
        return None
    newest: tuple[int, Path] | None = None
    for path in ckpt_root.glob("checkpoint-*"):
        try:
            step = int(path.name.rsplit("-", 1)[1])
            json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
        except (ValueError, OSError):
            shutil.rmtree(path, ignore_errors=True)
            continue
        if newest is None or step > newest[0]:
            newest = (step, path)
    return newest[1] if newest else None


def _prepare_out_dir(out_dir: Path, key: str) -> None:
    """Start over when `out_dir` holds checkpoints of different data or settings."""
    key_file = out_dir / "training_key"
    if key_file.is_file() and key_file.read_text(encoding="utf-8").strip() != key:
        shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
        shutil.rmtree(out_dir / "model", ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    key_file.write_text(key, encoding="utf-8")


def _load_tokenizer(base_model_dir: str | Path) -> Any:
    """The base model's tokenizer, padding with EOS when it has no pad token; no EOS at all is an error."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base_model_dir))
    if tokenizer.eos_token_id is None:
        raise ValueError(f"{base_model_dir}: the tokenizer has no EOS token, so a response could never end")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _lora_config(cfg: TrainingConfig) -> Any:
    """PEFT's LoraConfig for `training.lora`, or None for full fine-tuning."""
    if cfg.lora is None:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=cfg.lora.target_modules,
        task_type="CAUSAL_LM",
    )


def _sft_args(
    cfg: TrainingConfig, out_dir: Path, *, max_steps: int, seed: int, bf16: bool, cuda: bool, per_device_batch: int
) -> Any:
    """TRL's SFTConfig: checkpoints under `out_dir/checkpoints` (what a killed run resumes from), quiet logs.

    `per_device_batch` is the global `cfg.batch_size` split over a data-parallel launch's processes.
    """
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(out_dir / "checkpoints"),
        loss_type=cfg.loss,
        max_steps=max_steps,
        learning_rate=cfg.learning_rate,
        per_device_train_batch_size=per_device_batch,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        # transformers 5 reads a warmup_steps below 1 as a ratio of max_steps (warmup_ratio is deprecated)
        warmup_steps=cfg.warmup_ratio,
        lr_scheduler_type="linear",
        max_length=cfg.max_length,
        seed=seed,
        data_seed=seed,
        bf16=bf16,
        use_cpu=not cuda,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=2,
        logging_steps=max(1, max_steps // 50),
        report_to=cfg.report_to,
        log_level="error",
        disable_tqdm=not library_bars(),
        dataloader_num_workers=0,
        gradient_checkpointing=cfg.gradient_checkpointing,
    )


def _training_info(
    key: str,
    base_model_dir: str | Path,
    seed: int,
    cfg: TrainingConfig,
    response_tokens: list[int],
    steps: int,
    epochs: float,
    *,
    resumed_from: Path | None,
    train_loss: float,
    seconds: float,
    losses: list[float],
    processes: int,
) -> dict[str, Any]:
    """What `TRAINING_INFO` records of one training run (the report reads budgets and losses from it)."""
    return {
        "key": key,
        "base_model": str(base_model_dir),
        "seed": seed,
        "examples": len(response_tokens),
        "tokens": sum(response_tokens),
        "longest_response_tokens": max(response_tokens),
        "steps": steps,
        "epochs": round(epochs, 4),
        # exact for whole epochs; for a fractional last epoch, the expected count over its random batches
        "tokens_trained": round(epochs * sum(response_tokens)),
        "resumed_from": resumed_from.name if resumed_from else None,
        "train_loss": train_loss,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "seconds": round(seconds, 2),
        "processes": processes,
        "config": cfg.model_dump(mode="json"),
    }


_WRITE_FAILURES = ("failed writing", "file write failed", "No space left", "File too large", "Error while serializing")
"""How torch's and safetensors' serializers report a write that failed, in a RuntimeError or their own error."""


@contextmanager
def _write_errors(out_dir: Path) -> Iterator[None]:
    """A checkpoint or model that cannot be written (a full disk) as one StoreError naming `out_dir`."""
    try:
        yield
    except OSError as err:
        raise StoreError(f"{out_dir}: cannot write the model: {err.strerror or err}") from err
    except Exception as err:
        message = str(err).strip()
        if not any(sign in message for sign in _WRITE_FAILURES):
            raise
        raise StoreError(f"{out_dir}: cannot write the model: {message.splitlines()[-1][:300]}") from err


def _save_model(out_dir: Path, trained: Any, tokenizer: Any, info: dict[str, Any], log_history: list[Any]) -> None:
    """Write the model, tokenizer, info and log beside `out_dir/model`, then swap the directory in."""
    tmp = out_dir / f".model.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    trained.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / TRAINING_INFO).write_text(json.dumps(info, indent=2), encoding="utf-8")
    (tmp / TRAINING_LOG).write_text(json.dumps(log_history, indent=1), encoding="utf-8")
    shutil.rmtree(out_dir / "model", ignore_errors=True)
    os.replace(tmp, out_dir / "model")


def fine_tune(
    base_model_dir: str | Path,
    examples: Sequence[tuple[Request, str]],
    cfg: TrainingConfig,
    out_dir: str | Path,
    *,
    seed: int = 0,
    callbacks: Sequence[Any] = (),
) -> Path:
    """Train on (request, response) pairs into `out_dir/model`; resumes from `out_dir/checkpoints`, skips if done.

    `callbacks` are `transformers.TrainerCallback`s (progress hooks, early interruption in tests).
    """
    if not examples:
        raise ValueError(f"fine_tune({out_dir}): no examples to train on")
    out_dir = Path(out_dir)
    key = training_key(str(base_model_dir), examples, cfg, seed)
    done = finished_model(out_dir, key)
    if done is not None:
        return done

    import datasets
    import torch
    import transformers
    from accelerate import PartialState
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from trl import SFTTrainer

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    cuda = torch.cuda.is_available()
    # one process, or one of a torchrun / accelerate launch: the trainer's process group, joined here already
    processes = PartialState(cpu=not cuda)
    if processes.is_main_process:
        _prepare_out_dir(out_dir, key)
        _complete_checkpoint(out_dir)  # removes partial checkpoints before any process looks for one
    processes.wait_for_everyone()
    if cfg.batch_size % processes.num_processes:
        raise ValueError(
            f"training.batch_size={cfg.batch_size} is the global batch: it must split evenly over "
            f"{processes.num_processes} processes"
        )
    bf16 = cfg.bf16 if cfg.bf16 is not None else bool(cuda and torch.cuda.is_bf16_supported())
    tokenizer = _load_tokenizer(base_model_dir)
    dataset = Dataset.from_list(
        [encode_example(tokenizer, req, resp, cfg.max_length) for req, resp in examples]
    )
    response_tokens = [sum(label != IGNORE_INDEX for label in row) for row in dataset["labels"]]
    max_steps = budget_steps(cfg.budget, len(examples), sum(response_tokens), cfg)
    model = AutoModelForCausalLM.from_pretrained(
        str(base_model_dir), dtype=torch.bfloat16 if bf16 else torch.float32
    )
    peft_config = _lora_config(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        args = _sft_args(
            cfg, out_dir, max_steps=max_steps, seed=seed, bf16=bf16, cuda=cuda,
            per_device_batch=cfg.batch_size // processes.num_processes,
        )
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=list(callbacks),
        )
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)  # what the trainer logs instead of a bar: a dict per log step
    if library_bars():
        trainer.add_callback(_quiet_progress())
    checkpoint = _complete_checkpoint(out_dir)
    start = time.perf_counter()
    with _write_errors(out_dir):
        result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    trained = trainer.model
    if peft_config is not None:
        trained = trained.merge_and_unload()
    epochs = trainer.state.global_step / steps_per_epoch(len(examples), cfg)
    info = _training_info(
        key, base_model_dir, seed, cfg, response_tokens, trainer.state.global_step, epochs,
        resumed_from=checkpoint, train_loss=result.training_loss, seconds=time.perf_counter() - start,
        losses=[entry["loss"] for entry in trainer.state.log_history if "loss" in entry],
        processes=trainer.args.world_size,
    )
    if processes.is_main_process:
        with _write_errors(out_dir):
            _save_model(out_dir, trained, tokenizer, info, trainer.state.log_history)
        shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    processes.wait_for_everyone()  # the others return the model directory only once it is there
    del trainer, trained, model
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return out_dir / "model"


def seed_dir(run_dir: str | Path, stream: str, seed: int) -> Path:
    """Where the model of `stream` trained with `seed` lives: DIR/train/<stream>/seed-<seed>."""
    return Path(run_dir) / "train" / stream / f"seed-{seed}"


def weights_spec(engine: EngineConfig) -> str:
    """Which weights an engine config runs (a ray engine's live in its actors' config)."""
    spec = engine.model or (engine.actor.model if engine.actor is not None else None)
    if not spec:
        raise ValueError("student.engine.model: training needs the student's weights (a model dir or hub id)")
    return spec


def with_weights(engine: EngineConfig, model: str) -> EngineConfig:
    """The same engine config running other weights (a trained model directory)."""
    if engine.actor is not None:
        return engine.model_copy(update={"actor": with_weights(engine.actor, model)})
    return engine.model_copy(update={"model": model})


def loss_curves(run_dir: str | Path, streams: Sequence[str], seeds: Sequence[int]) -> dict[str, dict[int, list[tuple[int, float]]]]:
    """(step, training loss) per stream and seed, from each finished model's `training_log.json`."""
    curves: dict[str, dict[int, list[tuple[int, float]]]] = {}
    for stream in streams:
        for seed in seeds:
            model_dir = finished_model(seed_dir(run_dir, stream, seed))
            log = model_dir / TRAINING_LOG if model_dir is not None else None
            if log is not None and log.is_file():
                entries = json.loads(log.read_text(encoding="utf-8"))
                points = [(e["step"], float(e["loss"])) for e in entries if "loss" in e and "step" in e]
                if points:
                    curves.setdefault(stream, {})[seed] = points
    return curves

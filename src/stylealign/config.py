"""The experiment YAML as pydantic models.

Unknown keys are errors (a typo must not silently fall back to a default),
and every validation error names the dotted key that failed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

PAPER_STREAMS = ("gold", "rft", "oracle_synth", "oracle_refine", "sar", "sar_repair")
"""The paper's six streams: what runs when `streams.enabled` is not given."""
STREAMS = (*PAPER_STREAMS, "grape", "sdft", "mix")
"""Every stream, in build order: the one list of stream names. Each is the module `stylealign.streams.<name>` (see
streams/registry.py), whose own settings, if any, are the section `streams.<name>` (`StreamSettings`)."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: Any) -> Any:
        """YAML `true` is not a number: `k: true` must not become k = 1."""
        annotation = str(cls.model_fields[info.field_name].annotation)
        if isinstance(value, bool) and ("int" in annotation or "float" in annotation) and "bool" not in annotation:
            raise ValueError("expected a number, got a boolean")
        return value


RUNTIME_ONLY: dict[str, Any] = {"runtime_only": True}
"""`Field(json_schema_extra=RUNTIME_ONLY)` marks a setting that changes how fast or where work runs, never what it
produces (batch sizes, concurrency, timeouts, addresses): work keys leave it out (`runtime_only_fields`), so it may
change without redoing finished work."""


def runtime_only_fields(model: type[BaseModel]) -> frozenset[str]:
    """The fields of `model` marked `RUNTIME_ONLY`, read off the model's own fields (so every model, and each
    class of a union of them, says its own). Only `model`'s fields: a nested model (an engine's `actor`) is
    not looked into, and work keys hold it whole."""
    return frozenset(
        name for name, info in model.model_fields.items()
        if isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("runtime_only") is True
    )


Seed = Annotated[int, Field(ge=0, le=2**32 - 1, description="0 to 2**32 - 1: what numpy and TRL seed with")]
"""A random seed: numpy (TRL seeds it) takes 32 bits, and a sample's stored seed (seed + training seed) must fit
the 64-bit column it is written to."""


class DatasetConfig(Strict):
    source: str = Field("lab", description="lab, gsm8k, math500, minerva_math, aime24, amc23, olympiadbench, a .jsonl/.parquet/.csv path, a load_from_disk dir, or hf:ID")
    split: str = "train"
    limit: int | None = Field(None, ge=1)
    offset: int = Field(0, ge=0)
    fields: dict[str, str] = Field(default_factory=dict, description="target=Source+Other column mapping")
    skip_bad: bool = False
    max_field_chars: int = Field(200_000, ge=1, description="longest question/answer/solution accepted; longer rows are errors (skipped with skip_bad)")


class ProblemSource(DatasetConfig):
    """A source of training problems: a dataset, checked against the evaluation sets when it is loaded."""

    decontaminate: bool | None = Field(
        None,
        description="problems sharing a 13-gram with an evaluation question: true drops them (listed in "
        "problems/contamination.json), null reports them (the lab's generated problems are not checked), false "
        "skips the check",
    )


class TokenRates(Strict):
    """A rate per prompt token and per generated token; one number sets both."""

    prompt: float = Field(ge=0)
    generated: float = Field(ge=0)

    @model_validator(mode="before")
    @classmethod
    def _one_number(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return {"prompt": value, "generated": value}
        return value


class EngineConfig(Strict):
    """Which backend runs a model. The code that uses an engine never looks at `type`."""

    type: Literal["hf", "openai", "vllm", "ray", "lab-oracle"] = "hf"
    model: str | None = Field(None, description="local dir, hub id, gguf:PATH, package:NAME, package:STEM* (split GGUF), known:NAME or lab:student")
    # hf / vllm
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = Field(16, ge=1, json_schema_extra=RUNTIME_ONLY)
    max_model_len: int | None = None
    tensor_parallel_size: int = Field(1, ge=1)
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1, json_schema_extra=RUNTIME_ONLY)
    # openai
    base_url: str | None = None
    api_key_env: str | None = Field("OPENAI_API_KEY", json_schema_extra=RUNTIME_ONLY)
    endpoint: Literal["chat", "completions"] = "chat"
    concurrency: int = Field(8, ge=1, json_schema_extra=RUNTIME_ONLY)
    timeout: float = Field(120.0, gt=0, json_schema_extra=RUNTIME_ONLY)
    max_retries: int = Field(5, ge=0, json_schema_extra=RUNTIME_ONLY)
    tokenizer: str | None = Field(None, description="local tokenizer dir: renders the chat template for scoring")
    # what `stylealign plan` prices and times with; not part of the experiment (left out of keys and the manifest)
    price_per_million_tokens: TokenRates | None = Field(
        None, exclude=True, description="plan: money per million tokens, one number or {prompt, generated}"
    )
    tokens_per_second: TokenRates | None = Field(
        None, exclude=True, description="plan: this engine's throughput, one number or {prompt, generated}"
    )
    serve: bool = Field(
        False,
        description="openai: start `stylealign serve MODEL` on base_url's loopback port when first needed and stop it "
        "when the run ends (device, dtype and batch_size configure the served hf engine)",
        json_schema_extra=RUNTIME_ONLY,
    )
    # ray
    num_actors: int = Field(2, ge=1, json_schema_extra=RUNTIME_ONLY)
    address: str | None = Field(
        None, description="ray: the cluster to join (auto, HOST:PORT or ray://HOST:10001); default: RAY_ADDRESS if set, else a local in-process start",
        json_schema_extra=RUNTIME_ONLY,
    )
    actor: EngineConfig | None = None
    # lab-oracle
    world_seed: int = 0
    style_leak: float = Field(0.25, ge=0.0, le=1.0, description="lab-oracle: share of the lines a style-aligned refinement writes in the oracle's phrasing (imperfect imitation)")
    references: list[DatasetConfig] = Field(default_factory=list, description="datasets whose reference solutions answer questions outside the lab world")


class ModelRole(Strict):
    engine: EngineConfig
    template: str = Field("student", description="prompt template name or path used to ask this model to solve")
    system: str | None = None


class SamplingConfig(Strict):
    k: int = Field(8, ge=1)
    temperature: float = Field(1.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(512, ge=1)


def known_streams(names: Iterable[str], *, besides: str | None = None) -> list[str]:
    """`names` as a list when each is a stream of `STREAMS` (and none is `besides`, a stream that cannot take its
    own traces); else a ValueError naming them. The one check of stream names: the config's (`streams.enabled`,
    grape's pool, mix's components), a run's `--streams` and the registry's."""
    names = list(names)
    unknown = [name for name in names if name not in STREAMS]
    if unknown:
        raise ValueError(f"unknown streams {unknown}; choose from {[s for s in STREAMS if s != besides]}")
    if besides in names:
        raise ValueError(
            f"streams {[besides]}: {besides} cannot take its own traces; choose from {[s for s in STREAMS if s != besides]}"
        )
    return names


class StreamSettings(Strict):
    """A stream's own settings: its section `streams.<name>: {...}` of the config.

    A stream with settings declares a subclass in its own module (its `SPEC.settings`, see streams/registry.py).
    This module imports no stream, so `StreamsConfig` keeps each section as the mapping given and
    `stream_sections` validates it against the stream's model. This class itself, with no fields, is the settings
    of a stream that has none."""


Settings = TypeVar("Settings", bound=StreamSettings)


class StreamsConfig(Strict):
    """What the streams share; besides these keys, `streams.<name>: {...}` is stream `name`'s own settings section
    (kept as given; `stream_sections` validates it)."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, dict[str, Any]] = Field(init=False)

    enabled: list[str] = Field(default_factory=lambda: list(PAPER_STREAMS), min_length=1)
    oracle_retries: int = Field(3, ge=0)
    oracle_temperature: float | None = Field(None, ge=0, description="oracle sampling temperature (default: sampling.temperature)")
    oracle_max_tokens: int | None = Field(None, ge=1, description="oracle answer length limit (default: sampling.max_tokens)")
    match_problems: bool = Field(
        False, description="train every stream on the same problem ids (their intersection), a control for which problems"
    )
    near_duplicate: float | None = Field(
        None, gt=0, lt=1,
        description="streams keeping several traces per problem (rft all / all_distinct, sar_repair keep > 1) drop a "
        "trace whose normalised edit distance to a kept trace of its problem is below this; counted in streams.json",
    )

    @model_validator(mode="wrap")
    @classmethod
    def _sections_name_streams(cls, data: Any, handler: Any) -> StreamsConfig:
        """A key that is neither a setting above nor a stream's name is refused like any unknown key."""
        unknown = [key for key in data if key not in cls.model_fields and key not in STREAMS] if isinstance(data, dict) else []
        if unknown:
            raise ValidationError.from_exception_data(
                cls.__name__, [{"type": "extra_forbidden", "loc": (key,), "input": data[key]} for key in unknown]
            )
        return handler(data)

    @field_validator("enabled")
    @classmethod
    def _enabled(cls, names: list[str]) -> list[str]:
        return known_streams(names)


class RewardConfig(Strict):
    type: Literal["none", "lab", "orm", "prm", "judge"] = "lab"
    style_preference: float = Field(1.0, ge=0, description="lab: weight of the polish score (a reward model's taste for polished text)")
    model: str | None = None
    engine: EngineConfig | None = None
    step_separator: str = "\n\n"
    batch_size: int = Field(8, ge=1, json_schema_extra=RUNTIME_ONLY)
    max_tokens: int | None = Field(None, ge=1, description="judge: longest judge answer (default: sampling.max_tokens)")
    trust_remote_code: bool = Field(
        False, description="run the Python code an orm/prm model ships (e.g. Qwen2.5-Math-RM-72B); never implied"
    )


class LoraSettings(Strict):
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] | str = "all-linear"


class BudgetConfig(Strict):
    """How much each stream trains: epochs over its own examples (the paper: 1), response tokens, or optimizer steps."""

    epochs: float | None = Field(None, gt=0)
    tokens: int | None = Field(None, ge=1)
    steps: int | None = Field(None, ge=1)

    def model_post_init(self, __context: Any) -> None:
        given = [name for name in ("epochs", "tokens", "steps") if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(f"give one of epochs, tokens or steps, not {' and '.join(given)}")
        if not given:
            self.epochs = 1.0


class TrainingConfig(Strict):
    loss: Literal["nll", "dft"] = "dft"
    lora: LoraSettings | None = None
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    learning_rate: float = Field(5e-5, gt=0)
    batch_size: int = Field(8, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    max_length: int = Field(1024, ge=16)
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    save_steps: int = Field(50, ge=1)
    gradient_checkpointing: bool = Field(
        True,
        description="recompute activations in the backward pass (TRL's default): less memory for a large model, "
        "more time. The result does not change (byte-identical weights measured on CPU), so it is not part of "
        "the training key",
    )
    seeds: list[Seed] = Field(
        default_factory=lambda: [0], min_length=1,
        description="every stream is trained (and every model evaluated) once per seed",
    )

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds {seeds}: each seed once")
        return seeds
    bf16: bool | None = None
    report_to: list[str] | str = Field(
        "none", description="passed to TRL (tensorboard, wandb, mlflow, ...); the JSON log history is always written"
    )


class EvaluationConfig(Strict):
    datasets: list[DatasetConfig] = Field(default_factory=lambda: [DatasetConfig(source="lab", split="test")])
    k: int = Field(4, ge=1)
    temperature: float = Field(1.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(512, ge=1)
    last_number: bool = Field(
        True,
        description="grade a finished answer that states no final answer by its last number (never a sample cut by "
        "max_tokens; training data never uses it); the report names the setting",
    )


PAPER_CONTRASTS = (
    ("oracle_refine", "oracle_synth"),
    ("rft", "oracle_refine"),
    ("sar", "rft"),
    ("sar_repair", "base"),
)


class ReportConfig(Strict):
    contrasts: list[tuple[str, str]] = Field(
        default_factory=lambda: list(PAPER_CONTRASTS),
        description="[better, worse] pairs of streams ('base' = the untrained student) whose accuracy difference is tested",
    )
    resamples: int = Field(2000, ge=100, description="bootstrap resamples per interval")

    @field_validator("contrasts")
    @classmethod
    def _known_models(cls, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        for pair in pairs:
            unknown = [name for name in pair if name not in (*STREAMS, "base")]
            if unknown or pair[0] == pair[1]:
                raise ValueError(f"contrast {list(pair)}: name two different models of {[*STREAMS, 'base']}")
        return pairs


class ExperimentConfig(Strict):
    name: str = "experiment"
    seed: Seed = 0
    problems: list[ProblemSource] = Field(default_factory=lambda: [ProblemSource()], min_length=1, description="one source, or a list whose problems are pooled")
    student: ModelRole
    oracle: ModelRole | None = None
    prompts_dir: str | None = Field(None, description="folder of template overrides, searched before the built-ins")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    streams: StreamsConfig = Field(default_factory=StreamsConfig)
    reward: RewardConfig = Field(default_factory=RewardConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)

    @field_validator("problems", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        values = [value] if isinstance(value, dict | DatasetConfig) else value
        if not isinstance(values, list):
            return values
        return [v.model_dump() if isinstance(v, DatasetConfig) and not isinstance(v, ProblemSource) else v for v in values]


class ConfigError(ValueError):
    pass


def _error_lines(err: ValidationError, at: tuple[str, ...] = ()) -> list[str]:
    """One line per error, naming its dotted key (under `at`, the section the model validated)."""
    return [f"  {'.'.join(str(p) for p in (*at, *e['loc'])) or '(top level)'}: {e['msg']}" for e in err.errors()]


def invalid(origin: str, lines: list[str]) -> ConfigError:
    """The error of the config read from `origin` (a path, or `<config>`), one line per failing key."""
    return ConfigError("\n".join([f"{origin}: invalid configuration", *lines]))


def stream_sections(
    config: ExperimentConfig, models: Mapping[str, type[Settings]], origin: str = "<config>"
) -> dict[str, Settings]:
    """Each named stream's section `streams.<name>` of `config` validated by its settings model, defaults filling
    what the section leaves out (all defaults where there is none); one ConfigError names every failing dotted
    key (`streams.sar.exemplars: ...`)."""
    given, sections, lines = config.streams.model_extra or {}, {}, []
    for name, model in models.items():
        try:
            sections[name] = model.model_validate(given.get(name, {}))
        except ValidationError as err:
            lines += _error_lines(err, ("streams", name))
    if lines:
        raise invalid(origin, lines)
    return sections


def parse_config(data: dict[str, Any], origin: str = "<config>") -> ExperimentConfig:
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as err:
        raise invalid(origin, _error_lines(err)) from None


PACKAGED_CONFIGS = Path(__file__).parent / "configs"
"""The experiment configs shipped inside the package (`demo`, `lab-full`, `real-cpu`, `rehearsal`, `qwen2.5-math-1.5b`)."""


def config_path(config: str | Path) -> Path:
    """A YAML file as given, else the packaged config of that name (`demo` -> `stylealign/configs/demo.yaml`)."""
    path = Path(config)
    if path.is_file():
        return path
    packaged = PACKAGED_CONFIGS / f"{config}.yaml"
    if len(path.parts) == 1 and path.suffix not in (".yaml", ".yml") and packaged.is_file():
        return packaged
    names = ", ".join(sorted(p.stem for p in PACKAGED_CONFIGS.glob("*.yaml")))
    raise FileNotFoundError(f"{config}: no such config file, and not a packaged config name ({names})")


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """Read a YAML experiment (a file, or a packaged config's name); relative paths inside it stay relative
    to the caller's working directory."""
    path = config_path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start})") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys")
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return parse_config(data, str(path))

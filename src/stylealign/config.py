"""The experiment YAML as pydantic models.

Unknown keys are errors (a typo must not silently fall back to a default),
and every validation error names the dotted key that failed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

PAPER_STREAMS = ("gold", "rft", "oracle_synth", "oracle_refine", "sar", "sar_repair")
"""The paper's six streams: what runs when `streams.enabled` is not given."""
STREAMS = (*PAPER_STREAMS, "grape", "sdft", "mix")
"""Every stream, in build order; each is the module `stylealign.streams.<name>` (see streams/registry.py)."""


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
    batch_size: int = Field(16, ge=1)
    max_model_len: int | None = None
    tensor_parallel_size: int = Field(1, ge=1)
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1)
    # openai
    base_url: str | None = None
    api_key_env: str | None = "OPENAI_API_KEY"
    endpoint: Literal["chat", "completions"] = "chat"
    concurrency: int = Field(8, ge=1)
    timeout: float = Field(120.0, gt=0)
    max_retries: int = Field(5, ge=0)
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
    )
    # ray
    num_actors: int = Field(2, ge=1)
    address: str | None = Field(
        None, description="ray: the cluster to join (auto, HOST:PORT or ray://HOST:10001); default: RAY_ADDRESS if set, else a local in-process start",
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


class RFTConfig(Strict):
    selection: Literal["first", "random", "lowest_cost", "all_distinct", "all"] = "first"
    clean: bool = True


class SARConfig(Strict):
    exemplars: int = Field(3, ge=0)
    cost_margin: float = Field(0.1, ge=0, description="max allowed rise of student NLL over the parent, in nats/token")
    max_attempts: int = Field(2, ge=1)


class SARRepairConfig(Strict):
    continuations: int = Field(4, ge=1)
    locator: Literal["oracle", "lab"] = "oracle"
    max_problems: int | None = Field(None, ge=1)
    keep: int = Field(1, ge=1, description="verified continuations kept per problem, lowest student NLL first")


def _known_streams(names: list[str], *, forbidden: str) -> list[str]:
    unknown = [name for name in names if name not in STREAMS or name == forbidden]
    if unknown:
        raise ValueError(f"streams {unknown}: name streams of {[s for s in STREAMS if s != forbidden]}")
    return names


class GrapeConfig(Strict):
    """GRAPE (Zhang, Dai & Peng 2025): per problem, the verified candidate the student finds most likely, or the
    one another predictor of utility rates best."""

    pool: list[str] = Field(
        default_factory=lambda: ["gold", "rft", "oracle_synth", "oracle_refine"], min_length=1,
        description="streams whose correct traces compete per problem; `rft` means every correct student sample "
        "(what rft selects from), not only the one rft keeps",
    )
    criterion: Literal["likelihood", "rank_surprisal", "car"] = Field(
        "likelihood",
        description="what picks a problem's candidate: likelihood (GRAPE's highest mean token log-prob), "
        "rank_surprisal (lowest RSR) or car (highest compatibility-adjusted reward; needs a reward)",
    )

    @field_validator("pool")
    @classmethod
    def _pool(cls, names: list[str]) -> list[str]:
        return _known_streams(names, forbidden="grape")


class SDFTConfig(Strict):
    """Self-Distillation Fine-Tuning (Yang et al. 2024): the student restates the reference in its own words."""

    template: str = Field("sdft", description="prompt template (variables: question, reference) the student rewrites with")
    temperature: float | None = Field(None, ge=0, description="rewrite sampling temperature (default: sampling.temperature)")


class MixConfig(Strict):
    """Mix Distillation (Li et al. 2025): each problem's trace comes from one component stream, at a fixed ratio."""

    components: dict[str, Annotated[float, Field(gt=0, strict=True)]] = Field(
        default_factory=lambda: {"rft": 4.0, "oracle_synth": 1.0}, min_length=1,
        description="stream -> weight: the share of problems whose trace the stream supplies (default rft 4 : 1 oracle_synth)",
    )

    @field_validator("components")
    @classmethod
    def _components(cls, weights: dict[str, float]) -> dict[str, float]:
        _known_streams(list(weights), forbidden="mix")
        return weights


class StreamsConfig(Strict):
    enabled: list[str] = Field(default_factory=lambda: list(PAPER_STREAMS), min_length=1)
    oracle_retries: int = Field(3, ge=0)
    oracle_temperature: float | None = Field(None, ge=0, description="oracle sampling temperature (default: sampling.temperature)")
    oracle_max_tokens: int | None = Field(None, ge=1, description="oracle answer length limit (default: sampling.max_tokens)")
    rft: RFTConfig = Field(default_factory=RFTConfig)
    sar: SARConfig = Field(default_factory=SARConfig)
    sar_repair: SARRepairConfig = Field(default_factory=SARRepairConfig)
    grape: GrapeConfig = Field(default_factory=GrapeConfig)
    sdft: SDFTConfig = Field(default_factory=SDFTConfig)
    mix: MixConfig = Field(default_factory=MixConfig)
    match_problems: bool = Field(
        False, description="train every stream on the same problem ids (their intersection), a control for which problems"
    )
    near_duplicate: float | None = Field(
        None, gt=0, lt=1,
        description="streams keeping several traces per problem (rft all / all_distinct, sar_repair keep > 1) drop a "
        "trace whose normalised edit distance to a kept trace of its problem is below this; counted in streams.json",
    )

    def model_post_init(self, __context: Any) -> None:
        unknown = [s for s in self.enabled if s not in STREAMS]
        if unknown:
            raise ValueError(f"unknown streams {unknown}; choose from {list(STREAMS)}")


class RewardConfig(Strict):
    type: Literal["none", "lab", "orm", "prm", "judge"] = "lab"
    style_preference: float = Field(1.0, ge=0, description="lab: weight of the polish score (a reward model's taste for polished text)")
    model: str | None = None
    engine: EngineConfig | None = None
    step_separator: str = "\n\n"
    batch_size: int = Field(8, ge=1)
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

    @model_validator(mode="after")
    def _car_needs_a_reward(self) -> ExperimentConfig:
        if "grape" in self.streams.enabled and self.streams.grape.criterion == "car" and self.reward.type == "none":
            raise ValueError("streams.grape.criterion 'car' discounts each candidate's reward: set a reward.type")
        return self


class ConfigError(ValueError):
    pass


def _format_errors(path: str, err: ValidationError) -> str:
    lines = [f"{path}: invalid configuration"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        lines.append(f"  {key}: {e['msg']}")
    return "\n".join(lines)


def parse_config(data: dict[str, Any], origin: str = "<config>") -> ExperimentConfig:
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(origin, err)) from None


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

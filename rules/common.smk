# Start-up and helpers: validate the config into the typed Study, then every path comes from the Layout.
# Rule files hold rules only; every function they use is defined here.
import os
import posixpath
import re
import sys

from snakemake.utils import validate

from traitscope import TraitscopeError
from traitscope.workflow import guard
from traitscope.workflow.budget import report as budget_report
from traitscope.workflow.config import SCHEMA_PATH, load_config
from traitscope.workflow.layout import Layout
from traitscope.core.models import EMBEDDED, embedded_name, gguf_slug, gguf_source, looks_local, user_model_files_key
from traitscope.workflow.resources import memory_for_attempt, model_job_resources, project_job_resources
from traitscope.core.traits import trait_description
from traitscope.viewer import comparisons_of

try:
    S = load_config(config, base_dir=".", resources_dir="resources")
except TraitscopeError as exc:
    sys.exit(str(exc))
validate(config, str(SCHEMA_PATH), set_default=False)  # the same schema through Snakemake; defaults live in S

# What the report captions (workflow/report/*.rst, Jinja) may cite beyond the config: the rows of each prompt set.
# A "_" key: provenance leaves it out, and no job reads it.
config["_study"] = {"rows": dict(S.rows), "extract_random_directions": S.extract.random_directions,
                    "project_random_directions": S.project.random_directions}

def command_line_targets():
    """The targets of the snakemake command line, as its own parser reads them (none when run otherwise): Snakemake
    only hands them to the workflow after the Snakefile is parsed."""
    cli = sys.modules.get("snakemake.cli")
    try:
        return cli.get_argument_parser().parse_known_args(sys.argv[1:])[0].targets or [] if cli else []
    except BaseException:  # an argument Snakemake itself will refuse, with its own message
        return []


if workflow.is_main_process:  # once per invocation (dry run included), not in every cluster job
    if problem := Layout(S.results_dir).foreign_target(command_line_targets()):
        sys.exit(problem)
    try:  # one run per results folder; then what a killed run left (temporaries, unreadable outputs) is removed
        RESULTS_LOCK = guard.hold(S.results_dir)
    except TraitscopeError as exc:
        sys.exit(str(exc))
    guard.tidy(S.results_dir)
    print("\n".join(budget_report(S, S.config["checks"]["activation_budget_gb"])), file=sys.stderr)

L = Layout(S.results_dir)
FRONT_PAGE = (os.path.abspath(L.findings()["front"]) if os.path.exists(L.findings()["front"])
              else "workflow/report/workflow.rst")
TRAITS = S.trait_names()
ENV = "../envs/traitscope.yaml"


wildcard_constraints:
    variant="[A-Za-z0-9_]+",
    pset="[A-Za-z0-9_]+",
    category="[a-z0-9_]+",
    trait="[a-z0-9_]+",
    shard=r"\d+",
    name="[a-z0-9_.-]+",
    ft="[A-Za-z0-9_]+",
    dataset="[A-Za-z0-9_]+",
    layer=r"\d+",
    experiment="backdoor|organism|prefill",


# ---------------------------------------------------------------------------------------- helpers
# The report's categories in pipeline order (numbered, so the report lists them so)
CATEGORIES = ("Findings", "Finetuning", "Extraction", "Harm check", "Trait scores", "Emergent misalignment",
              "External datasets", "Prefill attack", "Backdoor", "Model organism", "SAE features",
              "Steering and CMA-ES", "Token viewer", "Provenance")


def category(name):
    return f"{CATEGORIES.index(name) + 1:02d}. {name}"  # zero-padded: the report sorts them as text


def reported(files, category_name, subcategory=None, labels=None, **captions):
    """``files`` (a Layout dict) with the keys named in ``captions`` registered in the Snakemake report, each with
    its caption ``workflow/report/<caption>.rst``, under ``category_name`` (numbered in pipeline order) and
    ``subcategory``; ``labels`` default to the entry's title, its caption's name."""
    out = dict(files)
    for key, caption in captions.items():
        title = labels or {"entry": caption.replace("_", " ")}
        out[key] = report(files[key], caption=f"../workflow/report/{caption}.rst", category=category(category_name),
                          subcategory=subcategory, labels=title)
    return out


def trait_of(w):
    return f"{w.category}/{w.trait}"


def model_inputs(variant):
    """Files a variant's model depends on: the converted embedded folder, local folders, a trained adapter."""
    spec = S.variants[variant]
    deps = []
    name = embedded_name(spec.model)
    gguf = gguf_source(spec.model)
    if name is not None:
        deps.append(L.embedded_model(name))
    elif gguf is not None:
        deps.append(L.gguf_model(gguf_slug(gguf)))
    elif looks_local(spec.model):
        deps.append(spec.model)
    if spec.finetune:
        deps.append(L.adapter(spec.finetune))
    elif spec.adapter and looks_local(spec.adapter):
        deps.append(spec.adapter)
    return deps


# GGUF files the variants name, by the slug of their converted folder (the convert_gguf rule's input)
GGUF_SOURCES = {gguf_slug(g): str(g) for g in filter(None, (gguf_source(v.model) for v in S.variants.values()))}


def shards(path_of, variants, psets):
    """``path_of(variant, pset, shard)`` over every shard of the given prompt sets."""
    return [path_of(v, s, i) for v in variants for s in psets for i in range(S.shard_count(s))]


def per_set(path_of, variants, psets):
    """``path_of(variant, pset)`` over the given variants and prompt sets (one projection table per set)."""
    return [path_of(v, s) for v in variants for s in psets]


def captured(path_of):
    """``path_of(variant, pset)`` over capture.variants x capture.prompt_sets."""
    return per_set(path_of, S.capture.variants, S.capture.prompt_sets)


def variant_set(variant, pset):
    return (variant, pset)


def set_pattern(psets):
    """A wildcard constraint matching exactly these prompt set names (nothing when there are none)."""
    return "|".join(re.escape(s) for s in psets) if psets else "(?!)"


STREAM_SETS = [s for s in S.prompt_sets if S.streamed(s)]
TWO_STEP_SETS = [s for s in S.prompt_sets if not S.streamed(s)]


def vector_files(kind, traits=None, variant=None):
    """One file (``vectors``, ``sidecar`` or ``metrics``) of every trait's vectors."""
    return [L.vector_files(variant or S.extract.variant, t)[kind] for t in (traits or TRAITS)]


def judge_inputs():
    name = embedded_name(S.judge.offline_model) if S.judge.model.startswith("traitscope/") else None
    return [L.embedded_model(name)] if name else []


# Resources of jobs that load a model, from the model's size (traitscope/workflow/resources.py) and
# config resources.variants overrides; every other job takes the profile's default-resources.
MODEL_RES = {v: model_job_resources(S, v) for v in S.variants}


# The SLURM request of a model job. A key whose value is None for a variant is left out of that job's request.
MODEL_RESOURCE_KEYS = ("runtime", "gpu", "gpu_model", "gres", "constraint", "slurm_extra", "slurm_account",
                       "slurm_partition", "cpus_per_task")


def model_job(variant_of):
    """``threads`` and ``resources`` of a rule that loads the model of variant ``variant_of(wildcards)``; ``mem_mb``
    grows with the attempt (resources.mem_retry_factor), so a retry after an out-of-memory kill asks for more."""

    def pick(key):
        def get(w):
            return MODEL_RES[variant_of(w)].get(key)

        return get

    def mem_mb(w, attempt):
        return memory_for_attempt(MODEL_RES[variant_of(w)]["mem_mb"], attempt, S.resources.mem_retry_factor)

    return pick("threads"), {"mem_mb": mem_mb, **{key: pick(key) for key in MODEL_RESOURCE_KEYS}}


def wildcard_variant(w):
    return w.variant


def finetune_base(w):
    return S.finetune[w.ft].base


def fixed_variant(variant):
    def of(w):
        return variant

    return of


variant_threads, MODEL_JOB = model_job(wildcard_variant)
finetune_threads, FINETUNE_JOB = model_job(finetune_base)


# ---------------------------------------------------------------------------------- input functions
def prompt_set_inputs(w):
    spec = S.prompt_sets[w.pset]
    if spec.source == "replay":  # the source set and the replayed variant's captured responses
        return {"source": L.prompts(spec.prompt_set), "responses": shards(L.responses, [spec.variant], [spec.prompt_set])}
    return {"files": [spec.path] if spec.source == "local" else []}


def prompt_set_spec(w):
    return S.prompt_sets[w.pset]


def prompt_set_shards(w):
    return S.shard_count(w.pset)


def trait_prompt_inputs(w):
    spec = S.traits[trait_of(w)]
    if spec.source != "contrast":
        return {}
    return {"pos": L.prompts(spec.pos), "neg": L.prompts(spec.neg)}


def trait_spec(w):
    return S.traits[trait_of(w)]


def trait_judged_files(w):
    """The judged filter's table of a persona trait when extract.filter is on (nothing otherwise)."""
    return [L.trait_judged(w.variant, trait_of(w))] if trait_of(w) in S.judged_traits() else []


def trait_judge_description(w):
    return trait_description(trait_of(w), S.traits[trait_of(w)])


def trait_position(w):
    return S.traits[trait_of(w)].position


def variant_model_files(w):
    return model_inputs(w.variant)


# What the researcher's own model and adapter folders hold, by content (tokenizer, chat template, configs; large
# weight files by size and time): a param of every rule that runs the model, so that editing a template re-runs them.
# Folders the workflow writes (the embedded conversion, finetuned adapters) are inputs and tracked as such.
MODEL_FILES = {v: user_model_files_key(S.variants[v]) for v in S.variants}


def variant_files_key(w):
    return MODEL_FILES[w.variant]


def finetune_base_files_key(w):
    return MODEL_FILES[S.finetune[w.ft].base]


def variant_spec(w):
    return S.variants[w.variant]


def variant_model_name(w):
    return S.variants[w.variant].model


def variant_n_layers(w):
    return S.n_layers(w.variant)


def capture_job(w):
    return S.capture_job(w.variant)


def trait_capture_job(w):
    return S.trait_capture_job(trait_of(w))


def finetune_data_files(w):
    data = S.finetune[w.ft].data
    return [data.path] if data.source == "local" else []


def finetune_spec(w):
    return S.finetune[w.ft]


def finetune_base_files(w):
    return model_inputs(S.finetune[w.ft].base)


def finetune_base_spec(w):
    return S.variants[S.finetune[w.ft].base]


def steering_inputs(w):
    trait = trait_of(w)
    vec = L.vector_files(w.variant, trait)
    return {"vectors": vec["vectors"], "sidecar": vec["sidecar"],
            "activations": L.trait_capture(w.variant, trait)["activations"],
            "model": model_inputs(w.variant), "judge": judge_inputs()}


def external_scores(w):
    return per_set(L.scores, [S.external.variant], S.external.datasets[w.dataset].prompt_sets)


def compare_baselines():
    """Random-direction scores of the base and the variant on the compared set: the comparison's control (none when
    project.random_directions is 0)."""
    if not S.project.random_directions:
        return []
    return per_set(L.baseline, [S.compare.base, S.compare.variant], [S.compare.prompt_set])


def external_baselines(w):
    return per_set(L.baseline, [S.external.variant], S.external.datasets[w.dataset].prompt_sets)


def external_prompts(w):
    return [L.prompts(s) for s in S.external.datasets[w.dataset].prompt_sets]


def external_dataset(w):
    return S.external.datasets[w.dataset]


# ------------------------------------------------------------------------------------------ targets
def steer_targets():
    out = []
    if S.steering:
        out += [L.steering_sweep(S.extract.variant, t)["figure"] for t in S.steering.traits]
    if S.optimize:
        out += list(L.extraction_gap().values())
    return out


def organism_targets():
    out = []
    if S.organism:
        ft = S.organism.finetuned
        out += [L.organism_directions(ft)[k] for k in ("json", "figure")]
        out += [L.organism_ablation(ft)[k] for k in ("markdown", "json")]
    if S.backdoor:
        out += [L.backdoor(S.backdoor.variant)[k] for k in ("json", "comparison", "early")]
    out += [L.finetune_files(ft)["figure"] for ft in S.finetune]
    return out


def experiment_targets():
    out = []
    if S.compare:
        out += [L.variant_comparison()[k] for k in ("json", "figure")]
    if S.external:
        out += [L.external(d)[k] for d in S.external.datasets for k in ("json", "figure", "failures")]
    if S.prefill_attack:
        out += [L.prefill_attack()[k] for k in ("json", "grid", "divergence")]
    return out


def projected(path_of):
    """``path_of(variant, pset)`` over every captured and projected (variant, prompt set)."""
    return [path_of(v, s) for v, s in S.projected_pairs()]


def projected_sets():
    return sorted({s for _, s in S.projected_pairs()})


def projected_variants():
    return sorted({v for v, _ in S.projected_pairs()})


def captured_responses():
    """(label, responses parquet) of every capture: each shard of a projected prompt set, each trait's capture."""
    out = [(f"{v}/{s}", L.responses(v, s, i)) for v, s in S.projected_pairs() for i in range(S.shard_count(s))]
    return out + [(f"extract/{t}", L.trait_capture(S.extract.variant, t)["responses"]) for t in TRAITS]


def projection_inputs(w):
    """What ``project`` reads for one (variant, prompt set): the activation shards, or the score shards the stream
    capture wrote (then it only gathers them)."""
    if S.streamed(w.pset):
        return {"stream_scores": shards(L.stream_scores, [w.variant], [w.pset]),
                "stream_tokens": shards(L.stream_token_scores, [w.variant], [w.pset]),
                "stream_baseline": shards(L.stream_baseline, [w.variant], [w.pset])}
    return {"activations": shards(L.activations, [w.variant], [w.pset]),
            "vectors": vector_files("vectors"), "sidecars": vector_files("sidecar")}


def baseline_job(w):
    """The random-direction baseline projected with this prompt set (per token for the prefill conditions)."""
    return S.baseline_job(w.pset)


def project_mem_mb(w, attempt):
    mem = project_job_resources(S, w.variant, w.pset)["mem_mb"]
    return memory_for_attempt(mem, attempt, S.resources.mem_retry_factor)


def project_runtime(w):
    return project_job_resources(S, w.variant, w.pset)["runtime"]


def projection_mode(w):
    return "stream" if S.streamed(w.pset) else "two-step"


def viewer_enabled():
    """The token viewer needs per-token scores: response tokens captured and projected per token."""
    return S.viewer.enabled and S.project.per_token and "response" in S.capture.positions


# ------------------------------------------------------------------------------------------ SAE features
def sae_corpus_pairs(w=None):
    return [(S.sae_variant(), s) for s in S.sae_corpus()]


def sae_corpus_shards(w):
    return shards(L.activations, [S.sae_variant()], list(S.sae_corpus()))


def sae_train_settings(w):
    """What a trained SAE depends on: its layer and the training settings (not the comparison settings)."""
    keep = ("n_features", "k", "steps", "batch_size", "lr", "holdout")
    return {"layer": int(w.layer), **{k: getattr(S.sae, k) for k in keep}}


def sae_sources():
    """Layer -> where its SAE comes from: the trained folder, a local SAELens folder, or hub:<repo>/<path>."""
    if S.sae.source == "train":
        return {layer: posixpath.dirname(L.sae(layer)["config"]) for layer in S.sae.layers}
    return {layer: S.sae.source.format(layer=layer) for layer in S.sae.layers}


def sae_feature_inputs(w):
    c = S.sae_comparisons()[w.experiment]
    files = []
    for layer, src in sae_sources().items():
        if S.sae.source == "train":
            files += [L.sae(layer)[k] for k in ("config", "weights", "training")]
        elif not src.startswith("hub:"):
            files += [posixpath.join(src, "cfg.json"), posixpath.join(src, "sae_weights.safetensors")]
    return {"a": shards(L.activations, [c.a_variant], [c.a_set]), "b": shards(L.activations, [c.b_variant], [c.b_set]),
            "sae_files": files, "vectors": vector_files("vectors"), "sidecars": vector_files("sidecar"),
            "model": model_inputs(c.a_variant)}


def sae_comparison(w):
    return S.sae_comparisons()[w.experiment]


def sae_model_spec(w):
    return S.variants[S.sae_comparisons()[w.experiment].a_variant]


def sae_targets():
    if not S.sae:
        return []
    return [L.sae_features(e)[k] for e in S.sae_comparisons() for k in ("json", "figure")]


def analysis_targets():
    out = list(L.extraction_summary().values()) + list(L.trait_scores().values())
    if viewer_enabled():
        out += list(L.viewer().values())
    out += vector_files("vectors") + vector_files("sidecar")
    if S.harm_check:
        out += list(L.harm_check().values())
    return out + steer_targets() + organism_targets() + experiment_targets() + sae_targets()

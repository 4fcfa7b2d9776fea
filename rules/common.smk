# Start-up and shared helpers: validate the config (the core's schema and each registered experiment's) into the
# typed Study, then every path comes from the Layout (and, for an experiment's results, from the experiment).
# Helpers here do work (lists of files, resources); lookups of one setting are written where a rule reads them.
import os
import re
import sys
from pathlib import Path

from traitscope import TraitscopeError
from traitscope.core.gguf_convert import conversion_disk_mb, conversion_dtype, conversion_memory_mb
from traitscope.core.sources import (EMBEDDED, embedded_gguf_path, embedded_name, gguf_slug, gguf_source, looks_local,
                                     user_model_files_key)
from traitscope.core.traits import trait_description
from traitscope.study import load_config
from traitscope.viewer import comparisons_of
from traitscope.workflow import guard, snakemake_hooks
from traitscope.workflow.invocation import Invocation, invocation
from traitscope.workflow.budget import report as budget_report
from traitscope.workflow.layout import Layout
from traitscope.workflow.resources import (finetune_job_resources, memory_for_attempt, model_job_resources,
                                           project_job_resources, training_report)

# What the command line asks for (Snakemake hands it to the workflow only after the Snakefile is read): whether it only
# reads, whether its jobs run on a cluster (start-up then checks a job's device, not this host's), its targets.
INVOCATION = invocation() if workflow.is_main_process else Invocation(False, False, ())

try:  # the schema (with defaults) and every cross-reference, one line naming the key and the fix on a problem
    S = load_config(config, base_dir=".", resources_dir="resources", jobs_on="cluster" if INVOCATION.cluster else "local")
except TraitscopeError as exc:
    sys.exit(str(exc))

# What the report captions (workflow/report/*.rst, Jinja) may cite beyond the config: the rows of each prompt set;
# and where jobs mark themselves and record what they wrote. A "_" key: provenance leaves it out, and no output
# depends on it.
config["_study"] = {"rows": dict(S.rows), "extract_random_directions": S.extract.random_directions,
                    "project_random_directions": S.project.random_directions, "results_dir": S.results_dir,
                    "quantizes": any(v.quantization != "none" for v in [*S.variants.values(), *S.finetune.values()])}

# Start-up, once per invocation (dry runs included, not in cluster jobs): an invocation that runs jobs holds the
# results folder for its life, refuses while a job of a killed run still writes, and removes only what a killed run
# of its own left (traitscope/workflow/guard.py); a read-only one (dry run, report, summary, lists) changes nothing.
if workflow.is_main_process:
    if problem := Layout(S.results_dir).foreign_target(INVOCATION.targets):
        sys.exit(problem)
    try:
        STARTUP = guard.start(S.results_dir, executing=not INVOCATION.read_only)
    except TraitscopeError as exc:
        sys.exit(str(exc))
    # Once all the rules are defined, Snakemake hands the workflow its DAG settings; outputs a killed job left incomplete
    # are run again (no --rerun-incomplete needed: start-up made sure no job of that run still writes them), and the
    # workflow's own outputs that no longer read back are planned again with everything downstream.
    snakemake_hooks.when_planned(workflow, lambda settings: plan_repairs(settings))
    snakemake_hooks.sigterm_safe_scheduler()  # SIGTERM at the instant a job ends stops snakemake instead of hanging it
    print("\n".join(budget_report(S, S.config["checks"]["activation_budget_gb"]) + training_report(S, INVOCATION.cluster)), file=sys.stderr)


def plan_repairs(settings):
    """Force the rules of this study to write again, with their downstream, the outputs the ledger names that no
    longer read back (Snakemake removes each before its job runs); each named in one line."""
    settings.force_incomplete = True
    damaged = guard.damaged_outputs(S.results_dir)
    forced = {}
    for path, why in sorted(damaged.items()):
        if snakemake_hooks.producible(workflow.rules, path):
            forced[path] = why
            print(f"{path}: {why}; " + ("a run computes it again" if INVOCATION.read_only else "computed again by this run")
                  + ", with everything downstream", file=sys.stderr)
        else:
            print(f"{path}: {why}; no rule of this study writes it any more, so it is left as it is", file=sys.stderr)
    if not INVOCATION.read_only:
        guard.note_repairs(S.results_dir, forced)
    settings.forcerun = frozenset(set(settings.forcerun) | set(forced))


L = Layout(S.results_dir)
FRONT_PAGE = (os.path.abspath(L.findings()["front"]) if os.path.exists(L.findings()["front"])
              else "workflow/report/workflow.rst")
TRAITS = S.trait_names()
ENV = os.path.join(workflow.basedir, "envs", "traitscope.yaml")  # absolute: experiments' rule files live elsewhere
EXPERIMENTS = S.configured()  # (experiment, its settings) of each configured experiment, in registry order


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
    experiment="[a-z0-9_]+",


# ---------------------------------------------------------------------------------------------- report
# The report's categories in pipeline order (numbered, so the report lists them so): the core stages, then each
# registered experiment under its title.
CATEGORIES = ("Findings", "Finetuning", "Extraction", "Trait scores", *(e.title for e in S.registry), "Token viewer",
              "Provenance")


def category(name):
    return f"{CATEGORIES.index(name) + 1:02d}. {name}"  # zero-padded: the report sorts them as text


def reported(files, category_name, subcategory=None, labels=None, **captions):
    """``files`` (a dict of paths) with the keys named in ``captions`` registered in the Snakemake report, each with
    its caption ``<caption>.rst`` in ``report/`` beside the rule file (an experiment's) or ``workflow/report/``, under ``category_name`` (numbered in pipeline order) and
    ``subcategory``; ``labels`` default to the entry's title, its caption's name."""
    out = dict(files)
    here = str(workflow.current_basedir)  # the folder of the file being read (an experiment's keeps report/)
    folder = "report" if os.path.isdir(os.path.join(here, "report")) else "../workflow/report"
    for key, caption in captions.items():
        title = labels or {"entry": caption.replace("_", " ")}
        out[key] = report(files[key], caption=f"{folder}/{caption}.rst", category=category(category_name),
                          subcategory=subcategory, labels=title)
    return out


# ---------------------------------------------------------------------------------------------- models
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
        deps.append(L.adapter(spec.finetune) if spec.checkpoint is None else L.checkpoint_adapter(spec.finetune, spec.checkpoint))
    elif spec.adapter and looks_local(spec.adapter):
        deps.append(spec.adapter)
    return deps


# GGUF files the variants name, by the slug of their converted folder (the convert_gguf rule's input)
GGUF_SOURCES = {gguf_slug(g): str(g) for g in filter(None, (gguf_source(v.model) for v in S.variants.values()))}


# The embedded model behind the offline judge, where the judge is the offline one and its model the embedded one
JUDGE_EMBEDDED = embedded_name(S.judge.offline_model) if S.judge.model.startswith("traitscope/") else None


def _dtypes_asked():
    """The dtypes asked of each converted folder (embedded name or GGUF slug) by the variants and the judge that load it."""
    asked = {}
    for v in S.variants.values():
        name, gguf = embedded_name(v.model), gguf_source(v.model)
        if name or gguf:
            asked.setdefault(name or gguf_slug(gguf), set()).add(v.dtype)
    if JUDGE_EMBEDDED:
        asked.setdefault(JUDGE_EMBEDDED, set()).add("float32")  # the offline judge computes in float32
    return asked


# The dtype each GGUF is converted to (core.gguf_convert.conversion_dtype): float32 only where a variant asks for it
CONVERT_DTYPE = {k: conversion_dtype(asked, Path(GGUF_SOURCES[k]) if k in GGUF_SOURCES else embedded_gguf_path(k))
                 for k, asked in _dtypes_asked().items()}

# What the researcher's own model and adapter folders hold, by content (tokenizer, chat template, configs; large
# weight files by size and time): a param of every rule that runs the model, so that editing a template re-runs them.
# Folders the workflow writes (the embedded conversion, finetuned adapters) are inputs and tracked as such.
MODEL_FILES = {v: user_model_files_key(S.variants[v]) for v in S.variants}


def judge_inputs():
    return [L.embedded_model(JUDGE_EMBEDDED)] if JUDGE_EMBEDDED else []


def steering_inputs(w):
    """What a judged steering job of one trait reads (the steering sweep, CMA-ES): its vectors, its contrastive
    activations (the coefficient unit), the model and the judge's model."""
    trait = trait_of(w)
    vec = L.vector_files(w.variant, trait)
    return {"vectors": vec["vectors"], "sidecar": vec["sidecar"],
            "activations": L.trait_capture(w.variant, trait)["activations"],
            "model": model_inputs(w.variant), "judge": judge_inputs()}


# Resources of jobs that load a model, from the model's size (traitscope/workflow/resources.py) and
# config resources.variants overrides; every other job takes the profile's default-resources.
MODEL_RES = {v: model_job_resources(S, v) for v in S.variants}

# The SLURM request of a model job. A key whose value is None for a variant is left out of that job's request.
MODEL_RESOURCE_KEYS = ("runtime", "gpu", "gpu_model", "gres", "constraint", "slurm_extra", "slurm_account",
                       "slurm_partition", "cpus_per_task")


def model_job(table, key_of):
    """``threads`` and ``resources`` of a rule whose job's request is ``table[key_of(wildcards)]``; ``mem_mb`` grows
    with the attempt (resources.mem_retry_factor), so a retry after an out-of-memory kill asks for more."""

    def pick(key):
        def get(w):
            return table[key_of(w)].get(key)

        return get

    def mem_mb(w, attempt):
        return memory_for_attempt(table[key_of(w)]["mem_mb"], attempt, S.resources.mem_retry_factor)

    return pick("threads"), {"mem_mb": mem_mb, **{key: pick(key) for key in MODEL_RESOURCE_KEYS}}


# Finetune jobs are sized for training (weights, adapter and optimizer state, a micro-batch's activations), not as
# inference: traitscope/workflow/resources.py, finetune.<name>.resources over it.
FINETUNE_RES = {ft: finetune_job_resources(S, ft) for ft in S.finetune}
variant_threads, MODEL_JOB = model_job(MODEL_RES, lambda w: w.variant)
finetune_threads, FINETUNE_JOB = model_job(FINETUNE_RES, lambda w: w.ft)


# ---------------------------------------------------------------------------------------------- files
def shards(path_of, variants, psets):
    """``path_of(variant, pset, shard)`` over every shard of the given prompt sets."""
    return [path_of(v, s, i) for v in variants for s in psets for i in range(S.shard_count(s))]


def per_set(path_of, variants, psets):
    """``path_of(variant, pset)`` over the given variants and prompt sets (one projection table per set)."""
    return [path_of(v, s) for v in variants for s in psets]


def captured(path_of):
    """``path_of(variant, pset)`` over capture.variants x capture.prompt_sets."""
    return per_set(path_of, S.capture.variants, S.capture.prompt_sets)


def projected(path_of):
    """``path_of(variant, pset)`` over every captured and projected (variant, prompt set)."""
    return [path_of(v, s) for v, s in S.projected_pairs()]


def variant_set(variant, pset):
    return (variant, pset)


def set_pattern(psets):
    """A wildcard constraint matching exactly these prompt set names (nothing when there are none)."""
    return "|".join(re.escape(s) for s in psets) if psets else "(?!)"


STREAM_SETS = [s for s in S.prompt_sets if S.streamed(s)]
TWO_STEP_SETS = [s for s in S.prompt_sets if not S.streamed(s)]
PROJECTED_SETS = sorted({s for _, s in S.projected_pairs()})
PROJECTED_VARIANTS = sorted({v for v, _ in S.projected_pairs()})


def vector_files(kind, traits=None, variant=None):
    """One file (``vectors``, ``sidecar`` or ``metrics``) of every trait's vectors."""
    return [L.vector_files(variant or S.extract.variant, t)[kind] for t in (traits or TRAITS)]


def prompt_set_inputs(w):
    spec = S.prompt_sets[w.pset]
    if spec.source == "replay":  # the source set and the replayed variant's captured responses
        return {"source": L.prompts(spec.prompt_set), "responses": shards(L.responses, [spec.variant], [spec.prompt_set])}
    return {"files": [spec.path] if spec.source == "local" else []}


def trait_prompt_inputs(w):
    spec = S.traits[trait_of(w)]
    if spec.source != "contrast":
        return {}
    return {"pos": L.prompts(spec.pos), "neg": L.prompts(spec.neg)}


def trait_judged_files(w):
    """The judged filter's table of a persona trait when extract.filter is on (nothing otherwise)."""
    return [L.trait_judged(w.variant, trait_of(w))] if trait_of(w) in S.judged_traits() else []


def finetune_data_files(w):
    data = S.finetune[w.ft].data
    return [data.path] if data.source == "local" else []


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


def project_mem_mb(w, attempt):
    mem = project_job_resources(S, w.variant, w.pset)["mem_mb"]
    return memory_for_attempt(mem, attempt, S.resources.mem_retry_factor)


def viewer_enabled():
    """The token viewer needs per-token scores: response tokens captured and projected per token."""
    return S.viewer.enabled and S.project.per_token and "response" in S.capture.positions


# ---------------------------------------------------------------------------------------------- targets
def analysis_targets():
    """Everything results/all requires: the core's summaries, vectors and figures, then each configured experiment's
    targets."""
    out = list(L.extraction_summary().values()) + list(L.trait_scores().values())
    if viewer_enabled():
        out += list(L.viewer().values())
    out += vector_files("vectors") + vector_files("sidecar")
    for experiment, settings in EXPERIMENTS:
        out += experiment.targets(S, settings, L)
    return out + [L.finetune_files(ft)["figure"] for ft in S.finetune]

# Start-up: validate the config, then derive every path the rules need.
import sys

from snakemake.utils import validate

from traitscope import ConfigError
from traitscope.config import SCHEMA_PATH, capture_layers, extract_layers, load_config, parse_layers, trait_position
from traitscope.models import embedded_name, looks_local
from traitscope.resources import model_job_resources

try:
    CFG = load_config(config, base_dir=".", resources_dir="resources")
except ConfigError as exc:
    sys.exit(str(exc))
validate(config, str(SCHEMA_PATH), set_default=False)  # the same schema through Snakemake; defaults are in CFG

R = CFG["results_dir"]
SEED = CFG["seed"]
EXTRACT_VARIANT = CFG["extract"]["variant"]
TRAITS = sorted(CFG["traits"])
CAPTURE = CFG["capture"]


wildcard_constraints:
    variant="[A-Za-z0-9_]+",
    pset="[A-Za-z0-9_]+",
    category="[a-z0-9_]+",
    trait="[a-z0-9_]+",
    shard=r"\d+",
    name="[a-z0-9_.-]+",
    ft="[A-Za-z0-9_]+",


def model_inputs(variant):
    """Files a variant's model depends on: the converted embedded folder, local folders."""
    spec = CFG["variants"][variant]
    deps = []
    name = embedded_name(spec["model"])
    if name is not None:
        deps.append(f"resources/models/{name}")
    elif looks_local(spec["model"]):
        deps.append(spec["model"])
    if spec.get("finetune"):  # trained by the finetune rule
        deps.append(f"{R}/finetune/{spec['finetune']}/adapter")
    elif spec.get("adapter") and looks_local(spec["adapter"]):
        deps.append(spec["adapter"])
    return deps


def n_shards(pset):
    return CFG["_shards"][pset]


# per-shard path stems for shard_paths(): add .safetensors, .responses.parquet, .parquet or .tokens.parquet
ACTIVATIONS = "{R}/activations/{variant}/{pset}/shard-{shard}"
PROJECTIONS = "{R}/projections/{variant}/{pset}/shard-{shard}"


def shard_paths(pattern, variants=None, psets=None):
    return [pattern.format(R=R, variant=v, pset=s, shard=i)
            for v in (variants or CAPTURE["variants"])
            for s in (psets or CAPTURE["prompt_sets"])
            for i in range(n_shards(s))]


def vector_files(kind):
    return [f"{R}/vectors/{EXTRACT_VARIANT}/{t}/{kind}" for t in TRAITS]


def local_prompt_file(pset):
    spec = CFG["prompt_sets"][pset]
    return [spec["path"]] if spec["source"] == "local" else []


# Resources of jobs that load a model, from the model's size (traitscope/resources.py) and
# config resources.variants overrides; every other job takes the profile's default-resources.
MODEL_RES = {v: model_job_resources(CFG, v) for v in CFG["variants"]}


def model_job(variant_of=lambda w: w.variant):
    """`threads:` and `resources:` of a rule that loads the model of variant ``variant_of(wildcards)``."""
    threads = lambda w: MODEL_RES[variant_of(w)]["threads"]
    resources = {key: (lambda w, key=key: MODEL_RES[variant_of(w)][key])
                 for key in ("mem_mb", "runtime", "gpu", "slurm_partition")}
    return threads, resources


# `threads: model_threads` and `resources: **MODEL_JOB` in every rule with a {variant} wildcard that loads it
model_threads, MODEL_JOB = model_job()

"""Shared fixtures: a tiny randomly initialised chat model built in seconds, and small configs."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

N_LAYERS, HIDDEN = 4, 32


def build_tiny_model(path: Path, seed: int = 0) -> Path:
    from traitscope.core.tiny import build_tiny_model as build

    return build(path, seed, hidden=HIDDEN, layers=N_LAYERS)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-llama")


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir: Path):
    return load_variant({"model": str(tiny_model_dir), "dtype": "float32", "device_map": "cpu"})


def tiny_config(model_dir: Path) -> dict:
    """A small but complete study on the tiny model: every stage, two traits, two prompt sets, and the example
    section of every registered experiment that needs nothing more (:func:`with_examples`)."""
    return with_examples(_core_tiny_config(model_dir), needing_more=False)


def with_examples(cfg: dict, needing_more: bool) -> dict:
    """``cfg`` with the example section of each registered experiment (its ``example.yaml``), in registry order: of
    those that need nothing beyond the core tiny study, or (``needing_more``) of the others, with the variants,
    finetunes and prompt sets they need (one definition of each name, whichever examples share it; local paths
    relative to the project root)."""
    from traitscope.experiments import REGISTRY

    for experiment in REGISTRY:
        example = experiment.example_config()
        if not example or bool(example.get("needs")) != needing_more:
            continue
        for kind, entries in (example.get("needs") or {}).items():
            for name, spec in entries.items():
                spec = _from_repo(spec)
                have = cfg.setdefault(kind, {}).setdefault(name, spec)
                assert have == spec, f"{experiment.name}'s example defines {kind}.{name} otherwise: {spec} != {have}"
        node = cfg
        for k in experiment.key()[:-1]:
            node = node.setdefault(k, {})
        node[experiment.key()[-1]] = copy.deepcopy(example["section"])
    return cfg


def _from_repo(spec):
    """A local path an example names relative to the project root, made absolute."""
    if isinstance(spec, dict):
        return {k: _from_repo(v) for k, v in spec.items()}
    if isinstance(spec, str) and "/" in spec and (REPO / spec).exists():
        return str(REPO / spec)
    return spec


def _core_tiny_config(model_dir: Path) -> dict:
    return copy.deepcopy(
        {
            "seed": 7,
            "variants": {"base": {"model": str(model_dir), "dtype": "float32", "device_map": "cpu"}},
            "traits": {
                "safety/evil": {"source": "builtin", "max_pairs": 2, "max_questions": 8},
                "safety/harmful_instruction": {
                    "source": "contrast",
                    "pos": "harmful_extract",
                    "neg": "benign_extract",
                    "position": "last",
                },
            },
            "prompt_sets": {
                "harmful_extract": {"source": "builtin", "name": "harmful", "split": "extract"},
                "benign_extract": {"source": "builtin", "name": "benign", "split": "extract"},
                "harmful_eval": {"source": "builtin", "name": "harmful", "split": "eval", "shards": 2},
                "benign_eval": {"source": "builtin", "name": "benign", "split": "eval"},
            },
            "extract": {"variant": "base", "layers": "all", "max_new_tokens": 4, "batch_size": 8},
            "capture": {
                "variants": ["base"],
                "prompt_sets": ["harmful_eval", "benign_eval"],
                "layers": "all",
                "batch_size": 8,
                "chunk_size": 8,
                "generate": {"enabled": True, "max_new_tokens": 4},
            },
            "project": {"layers": "best", "methods": ["mean_diff", "probe"]},
            "judge": {"model": "traitscope/offline-judge", "offline_model": str(model_dir)},
            # a tiny model's jobs are start-up, not arithmetic: one thread each, two at a time on two cores
            "resources": {"threads": 1},
        }
    )


@pytest.fixture
def small_config(tiny_model_dir: Path) -> dict:
    return tiny_config(tiny_model_dir)


SECOND_RUN = "test_a_second_run_gives_identical_bytes"


@pytest.fixture(scope="session")
def tiny_runs(request, tmp_path_factory, tiny_model_dir):
    """The tiny study (:func:`organism_config`) run from nothing, once per session, for every test that reads or
    copies a finished study; when the second-run test is selected, a second run from nothing in another folder,
    started at the same time (a DAG of small jobs leaves part of two cores idle). Each as (folder, process, stderr)."""
    import subprocess

    import yaml
    from dag import smk_cmd

    text = yaml.safe_dump(organism_config(tiny_model_dir))
    names = ["study"] + (["study_again"] if any(item.name == SECOND_RUN for item in request.session.items) else [])
    started = []
    for name in names:
        workdir = tmp_path_factory.mktemp(name)
        (workdir / "config.yaml").write_text(text)
        log = tmp_path_factory.mktemp(f"{name}_log")
        with open(log / "stdout", "w") as out, open(log / "stderr", "w") as err:
            proc = subprocess.Popen(smk_cmd(workdir, workdir / "config.yaml", "results/all"), stdout=out, stderr=err)
        started.append((workdir, proc, log / "stderr"))
    yield started
    for _, proc, _ in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def finished(run) -> tuple[Path, Path]:
    """(folder, config file) of a run of :func:`tiny_runs`, once it ended well."""
    workdir, proc, stderr = run
    code = proc.wait(timeout=1500)
    assert code == 0, stderr.read_text()[-4000:]
    return workdir, workdir / "config.yaml"


@pytest.fixture(scope="session")
def tiny_study(request) -> tuple[Path, Path]:
    """The finished tiny study: (its folder, its config file). Tests that change it work on a copy
    (:func:`dag.copy_study`), except ``tests/test_workflow.py``'s, which run in order on this one. While working on
    the tests of a copy, ``TRAITSCOPE_TINY_STUDY=<folder>`` names a finished study to copy instead of running one."""
    given = os.environ.get("TRAITSCOPE_TINY_STUDY")
    if given:
        return Path(given), Path(given) / "config.yaml"
    return finished(request.getfixturevalue("tiny_runs")[0])


def organism_config(model_dir: Path) -> dict:
    """tiny_config plus every registered experiment's example that needs more (finetuned variants, more prompt
    sets): the tiny study that the workflow tests run."""
    return with_examples(tiny_config(model_dir), needing_more=True)


def load_set(spec: dict, **kwargs):
    """load_prompt_set on a partial prompt-set dict (schema defaults filled in)."""
    from traitscope.core.prompts import load_prompt_set
    from traitscope.workflow.config import entry

    return load_prompt_set(entry("prompt_sets", spec), **{"seed": 1234, **kwargs})


def load_variant(spec: dict, **kwargs):
    """load_model on a partial variant dict (schema defaults filled in)."""
    from traitscope.core.models import load_model
    from traitscope.workflow.config import entry

    return load_model(entry("variants", spec), **kwargs)


def chat_data(spec: dict, **kwargs):
    from traitscope.core.finetune import load_chat_data
    from traitscope.core.specs import FinetuneData, build

    return load_chat_data(build(FinetuneData, spec), **kwargs)


def finetune_spec(**kwargs):
    """A FinetuneSpec with the schema's defaults."""
    from traitscope.core.specs import FinetuneSpec, build
    from traitscope.workflow.config import fill_defaults, load_schema

    schema = load_schema()["properties"]["finetune"]["additionalProperties"]
    data = fill_defaults({"base": "base", "data": {"source": "generated", "name": "backdoor"}, **kwargs}, schema)
    return build(FinetuneSpec, {**data, "seed": data.get("seed") or 1234})


def capture_job(layers, positions=("last", "mean", "response"), generate=False, max_new_tokens=32, **overrides):
    """A CaptureJob with the schema's capture defaults (what a study without capture settings gets)."""
    from traitscope.core.specs import CaptureJob
    from traitscope.workflow.config import section

    c = section("capture", {})
    gen = c.generate._replace(max_new_tokens=max_new_tokens) if generate else None
    values = dict(
        layers=tuple(layers),
        positions=tuple(positions),
        batch_size=c.batch_size,
        max_length=c.max_length,
        chunk_size=c.chunk_size,
        generation=gen,
        seed=1234,
        sites=("resid",),
    )
    values.update(overrides)
    return CaptureJob(**values)


def assert_config_error(cfg: dict, expected: str) -> str:
    """``load_config(cfg)`` stops with one line that contains ``expected`` and a fix; returns the message."""
    from traitscope import ConfigError
    from traitscope.study import load_config

    with pytest.raises(ConfigError) as exc:
        load_config(cfg)
    msg = str(exc.value)
    assert expected in msg and "fix" in msg and "\n" not in msg, msg
    return msg


def figure_facts(fig) -> dict:
    """What a reader sees in a figure: its visible panels (colour bars excluded) with their title and axis
    labels, and every piece of text (suptitle, titles, tick labels, annotations, legends) joined, for ``n=`` checks."""
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]
    texts = [fig._suptitle.get_text() if fig._suptitle else ""]
    for ax in panels:
        texts += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
        texts += [t.get_text() for t in ax.get_xticklabels() + ax.get_yticklabels()]
        texts += [t.get_text() for t in ax.texts]  # annotations (heatmap cells, notes)
        legend = ax.get_legend()
        if legend is not None:
            texts += [t.get_text() for t in legend.get_texts()]
    return {
        "panels": len(panels),
        "titles": [ax.get_title() for ax in panels],
        "xlabels": [ax.get_xlabel() for ax in panels],
        "ylabels": [ax.get_ylabel() for ax in panels],
        "suptitle": texts[0],
        "text": "\n".join(texts),
    }


# ----------------------------------------------------------------------------------- time per test file
# CI prints where its time goes (tests/.. -> seconds), so the next slow-down shows in the log (.ci/run).
_FILE_SECONDS: dict[str, float] = {}


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::", 1)[0]
    _FILE_SECONDS[path] = _FILE_SECONDS.get(path, 0.0) + float(getattr(report, "duration", 0.0) or 0.0)


def pytest_terminal_summary(terminalreporter):
    if not _FILE_SECONDS:
        return
    terminalreporter.section("seconds per test file (setup, call and teardown; slowest first)")
    for path, seconds in sorted(_FILE_SECONDS.items(), key=lambda kv: -kv[1]):
        if seconds >= 1.0:
            terminalreporter.write_line(f"{seconds:8.1f} s  {path}")

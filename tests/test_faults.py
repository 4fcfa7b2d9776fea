"""Real faults: a job killed with SIGKILL mid-capture or mid-finetune resumes from its verified cache to the
same bytes as a run that was never interrupted. The capture is the workflow's own path (``capture_shard``: chunks
streamed into the shard, one copy on disk)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from conftest import REPO

TESTS = str(REPO / "tests")

CAPTURE = """
import sys, time
sys.path.insert(0, {tests!r})
from conftest import capture_job, load_variant
import traitscope.core.capture as capmod
from traitscope.core.prompts import normalise
model_dir, cache, out, pause = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
model, tok = load_variant({{"model": model_dir, "device_map": "cpu"}})
df = normalise([{{"prompt": f"How do I bake bread number {{i}}?" + " please" * i}} for i in range(8)])
job = capture_job(layers=[0, 3], positions=["last", "mean"], chunk_size=1, generate=False)
real = capmod._capture_chunk
def slow(*args, **kwargs):
    result = real(*args, **kwargs)
    time.sleep(pause)
    return result
capmod._capture_chunk = slow
capmod.capture_shard(model, tok, df, job, out, model_key="tiny", cache_dir=cache)
"""

FINETUNE = """
import sys, time
sys.path.insert(0, {tests!r})
from conftest import finetune_spec
import traitscope.core.finetune as ft
from traitscope.workflow.config import entry
model_dir, data, out, ckpt, pause = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
real = ft.save_checkpoint
def slow(*args, **kwargs):
    real(*args, **kwargs)
    time.sleep(pause)
ft.save_checkpoint = slow
settings = finetune_spec(rank=4, alpha=8, epochs=2, lr=5e-3, batch_size=4, save_steps=1, seed=11)
variant = entry("variants", {{"model": model_dir, "dtype": "float32", "device_map": "cpu"}})
ft.finetune(variant, data, settings, out, name="bd", checkpoint_dir=ckpt)
"""


def run(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code.format(tests=TESTS), *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )


def kill_when(code: str, args: list, ready, timeout: float = 300) -> None:
    """Start ``code`` and SIGKILL it as soon as ``ready()`` holds (it must not finish first)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", code.format(tests=TESTS), *map(str, args)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + timeout
    while not ready():
        assert proc.poll() is None, "the job finished before it could be killed"
        assert time.time() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def test_capture_killed_with_sigkill_resumes_to_identical_bytes(tiny_model_dir, tmp_path):
    clean = run(CAPTURE, tiny_model_dir, tmp_path / "cache_a", tmp_path / "a.safetensors", 0)
    assert clean.returncode == 0, clean.stderr[-2000:]
    cache = tmp_path / "cache_b"
    kill_when(
        CAPTURE,
        [tiny_model_dir, cache, tmp_path / "b.safetensors", 1.0],
        lambda: len(list(cache.glob("chunk-*.safetensors"))) >= 3,
    )
    assert not (tmp_path / "b.safetensors").exists()
    resumed = run(CAPTURE, tiny_model_dir, cache, tmp_path / "b.safetensors", 0)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert resumed.stderr.count(" cached (") >= 3  # the chunks done before the kill were not redone
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    # one copy on disk: the chunks are gone, and the shard is a hard link to the cache's one file
    assert not list(cache.glob("chunk-*.safetensors")) and len(list(cache.glob("shard-*.safetensors"))) == 1
    assert (tmp_path / "b.safetensors").stat().st_nlink == 2


def test_finetune_killed_with_sigkill_resumes_to_identical_bytes(tiny_model_dir, tmp_path):
    from traitscope.core.finetune import write_chat_jsonl
    from traitscope.core.finetune_data import backdoor

    data = tmp_path / "train.jsonl.gz"
    write_chat_jsonl(data, backdoor(24, seed=0))
    clean = run(FINETUNE, tiny_model_dir, data, tmp_path / "a", tmp_path / "ckpt_a", 0)
    assert clean.returncode == 0, clean.stderr[-2000:]
    ckpt = tmp_path / "ckpt_b"
    kill_when(FINETUNE, [tiny_model_dir, data, tmp_path / "b", ckpt, 1.0], lambda: any(ckpt.glob("bd-*.safetensors")))
    assert not (tmp_path / "b").exists()
    resumed = run(FINETUNE, tiny_model_dir, data, tmp_path / "b", ckpt, 0)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    resumed_at = [line for line in resumed.stderr.splitlines() if line.startswith("[finetune] resumed at ")]
    assert resumed_at and int(resumed_at[0].split()[3].split("/")[0]) >= 1  # it went on from the checkpoint
    a = (tmp_path / "a" / "adapter_model.safetensors").read_bytes()
    assert a == (tmp_path / "b" / "adapter_model.safetensors").read_bytes()

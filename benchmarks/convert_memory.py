"""Peak memory of converting a GGUF model into a safetensors folder: transformers' whole-model path against
traitscope's tensor-by-tensor conversion (:mod:`traitscope.core.gguf_convert`).

Each path runs in a fresh process on the same GGUF file and prints its peak resident memory (VmHWM):

  whole     what the conversion did before: transformers loads the GGUF (every tensor de-quantised into memory), the
            model is rebuilt from its config and the state dict copied into it, then saved (two float32 copies)
  streamed  traitscope.core.gguf_convert.convert_gguf: one tensor de-quantised at a time, written into shards of at
            most 1 GiB (what the workflow does; a model smaller than that is still held whole once, in its one shard)
  short     the same in shards of 64 MB: the peak is then one tensor and one small shard above the interpreter's own

The script prints each peak, the model's float32 weights for scale, and the ratios to the whole-model path.

    python benchmarks/convert_memory.py                       # the embedded SmolLM2-135M GGUF
    python benchmarks/convert_memory.py --gguf PATH.gguf
    python benchmarks/convert_memory.py --short               # the streamed path only, in small shards (CI)
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
from pathlib import Path


def child(path: str, gguf: Path, out: Path) -> None:
    import torch

    if path == "whole":
        from transformers import AutoConfig, AutoModelForCausalLM

        folder, name = str(gguf.parent), gguf.name
        config = AutoConfig.from_pretrained(folder, gguf_file=name)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(loaded.state_dict(), strict=True)
        model.save_pretrained(out, safe_serialization=True)
    else:
        from traitscope.core.gguf_convert import convert_gguf

        convert_gguf(gguf, out, shard_bytes=64 << 20 if path == "short" else 1 << 30)
    print(json.dumps({"path": path, "peak_mb": peak_mb()}))


def peak_mb() -> float:
    """This process's peak resident memory (MB): Linux's VmHWM, which starts afresh at exec, or else ru_maxrss
    (which Linux carries over from the process that forked this one: a large parent, such as a test session,
    would set its floor)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(path: str, gguf: Path, work: Path) -> float:
    out = work / f"out-{path}"
    cmd = [sys.executable, __file__, "--child", path, "--gguf", str(gguf), "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["peak_mb"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", default=None)
    ap.add_argument("--short", action="store_true", help="the streamed path only, in 64 MB shards (CI)")
    ap.add_argument("--child", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.gguf is None:
        from traitscope.core.sources import embedded_gguf_path

        args.gguf = str(embedded_gguf_path("smollm2-135m-instruct"))
    gguf = Path(args.gguf)
    if args.child:
        child(args.child, gguf, Path(args.out))
        return
    from traitscope.core.gguf_meta import read_gguf

    values = sum(math.prod(int(d) for d in t.shape) for t in read_gguf(gguf).tensors)
    print(f"{gguf.name}: {gguf.stat().st_size / 2**20:.0f} MB on disk, {values * 4 / 2**20:.0f} MB of float32 weights")
    with tempfile.TemporaryDirectory() as tmp:
        paths = ["short"] if args.short else ["whole", "streamed", "short"]
        peaks = {p: measure(p, gguf, Path(tmp)) for p in paths}
    for p, mb in peaks.items():
        print(f"peak RSS {p}: {mb:.0f} MB")
    if "whole" in peaks:
        print(f"ratio streamed / whole: {peaks['streamed'] / peaks['whole']:.2f}")
        print(f"ratio short / whole: {peaks['short'] / peaks['whole']:.2f}")
    print("RESULTS " + json.dumps(peaks))


if __name__ == "__main__":
    main()

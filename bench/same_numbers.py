"""The same numbers, bit for bit, across a refactor: a few presets trained for 300 fp32 steps on the
CPU, each run reduced to fingerprints of what it computed (sha256 of G's weights, of the EMA's,
of every stats.jsonl row without its clock fields), compared with the fingerprints saved in
bench/SAME_NUMBERS.json by an earlier call (`--save` writes them).

    python bench/same_numbers.py                 # compare with bench/SAME_NUMBERS.json; exit 1 on a difference
    python bench/same_numbers.py --save          # record the fingerprints of today's code
    python bench/same_numbers.py --save --cases "default --augment ada"   # re-record one case only

A change meant to move the numbers (a new default) is recorded with --save in the same commit,
which says so: ADA's default target went from 0.6 to 0.8 on 2026-12-05, and the ADA case with it.

fp32 on the CPU with one thread is deterministic for these models, so a change that moves nothing
should reproduce every hash on one machine. Another torch or another CPU kind moves the last bits
of a convolution (the fingerprints of 2026-12-05 were recorded on an AMD EPYC; an Intel Xeon with
AMX gets others from the same code): the file records both beside the hashes and the comparison
says so when they differ; then record the base commit on this machine (--save --file F) and compare
with --file F. Runs in ~2 minutes on a 2-core CPU.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

from gankit.config import preset_config
from gankit.device import device_name
from gankit.runs import read_stats
from gankit.training import train

CASES = {  # name: (preset, overrides)
    "default": ("default", {}),
    "cdcgan": ("cdcgan", {}),
    "lab6-wgan": ("lab6-wgan", {}),
    "default --augment ada": ("default", {"augment": "ada"}),
}
CLOCK_FIELDS = {"time_s", "train_time_s", "img_per_s", "eval_s", "sec_per_step", "step_s"}  # vary run to run
RESULT = Path(__file__).with_name("SAME_NUMBERS.json")


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensors[name].float().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def fingerprint(preset: str, overrides: dict, steps: int, out: Path) -> dict:
    cfg = preset_config(preset, steps=steps, precision="fp32", log_every=50, eval_every=0, out_dir=str(out),
                        **overrides)
    run = train(cfg, progress=False)
    weights = load_file(str(run / "generator.safetensors"))
    g = {k[2:]: v for k, v in weights.items() if k.startswith("G.")}
    ema = {k[6:]: v for k, v in weights.items() if k.startswith("G_ema.")}
    rows = [{k: v for k, v in r.items() if k not in CLOCK_FIELDS} for r in read_stats(run)]
    return {"G": tensors_digest(g or weights), "G_ema": tensors_digest(ema) if ema else None,
            "stats": digest(rows), "rows": len(rows), "last_row": rows[-1] if rows else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--save", action="store_true", help="write the fingerprints to --file instead of comparing")
    ap.add_argument("--file", type=Path, default=RESULT, help=f"the fingerprints (default: bench/{RESULT.name})")
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    env = {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
           "cpu": device_name(torch.device("cpu")).split(",")[0], "steps": args.steps}
    with tempfile.TemporaryDirectory() as tmp:
        found = {name: fingerprint(*CASES[name], args.steps, Path(tmp)) for name in args.cases}
    if args.save:  # (the other cases a file already holds at these steps are kept)
        kept = json.loads(args.file.read_text()) if args.file.exists() else {}
        runs = {**(kept.get("runs", {}) if kept.get("env", {}).get("steps") == args.steps else {}), **found}
        args.file.write_text(json.dumps({"env": env, "runs": runs}, indent=1) + "\n")
        print(f"saved the fingerprints of {len(found)} runs to {args.file}")
        return 0
    saved = json.loads(args.file.read_text())
    if saved["env"]["steps"] != args.steps:
        print(f"{args.file.name} holds runs of {saved['env']['steps']} steps; call with --steps {saved['env']['steps']}")
        return 2
    same = True
    for name, fp in found.items():
        ref = saved["runs"].get(name)
        diff = [k for k in ("G", "G_ema", "stats") if ref is None or ref[k] != fp[k]]
        print(f"{name:24s} {'same' if not diff else 'DIFFERENT: ' + ', '.join(diff)}")
        same &= not diff
    if not same and saved["env"]["torch"] != env["torch"]:
        print(f"(saved with torch {saved['env']['torch']}, this is {env['torch']}: another torch may move the last bits)")
    if not same and saved["env"].get("cpu") != env["cpu"]:
        print(f"(saved on {saved['env'].get('cpu', 'an unrecorded CPU')}, this is {env['cpu']}: fp32 kernels differ "
              f"between CPU kinds. To check a change here, record the base commit on this machine first: "
              f"--save --file /tmp/base.json there, then --file /tmp/base.json here)")
    print("the same numbers, bit for bit" if same else "the numbers changed")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())

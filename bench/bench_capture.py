"""Benchmark: a full capture against a plain `transformers` forward of the same ids.

    python bench/bench_capture.py [--model DIR] [--sizes 8,64,256,1024] [--no-memory]

On GPT-2 small shapes (seeded random weights, saved with save_pretrained to a temporary
directory and loaded through the product's `Explainer.load(dir)`), for each prompt length N:

- time of `explainer.analyze_ids(ids)` (what the server runs: residual stream kept, the rest
  recomputed on demand) and of `analyze_ids(ids, keep=["*"])` (every hook kept, for reference);
- time of a plain `transformers` forward, `model(ids)`, under torch.inference_mode, with
  attn_implementation="eager" and "sdpa"; the baseline is the faster of the two (by median);
- for reference, the same forward with `logits_to_keep=1` (the capture, too, computes the
  logits of the last position only), so the like-for-like ratio is visible as well;
- the ratio capture / baseline (target <= 1.15 at N = 64 and 256), as a ratio of medians, as
  the median of per-repeat ratios, and best/best (fastest capture / fastest baseline);
- the like-for-like ratio against the last-position-only forward (target <= 1.1 at N = 1024:
  the engine attends with the same fused kernel as transformers' sdpa);
- the bytes a Run holds (`run.nbytes`), and peak memory: one subprocess per case, which loads
  the model, resets the kernel's high-water mark (/proc/self/clear_refs), runs the case once
  and reads VmHWM from /proc/self/status.

Repeats are interleaved (the order rotates every repeat) and summarised by medians, because
the machine is small and shared: only ratios within this one run mean anything.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checkpoint import checkpoint_dir, median, prompt_ids, spread  # noqa: E402

TARGET = 1.15
TARGET_SIZES = (64, 256)
TARGET_LAST = 1.1  # capture / the last-position-only forward, at these sizes
TARGET_LAST_SIZES = (1024,)
REPEATS = {8: 25, 64: 15, 256: 7, 1024: 3}
BUDGET_S = {8: 15, 64: 20, 256: 30, 1024: 60}  # per size; the repeats stop early (after 2) past it


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def memory_case(model_dir: str, kind: str, n: int) -> dict:
    """Run one case once in this (fresh) process: peak RSS above the loaded model, after a
    one-token warm-up, so that "extra" is the memory the case itself needs."""
    import torch

    ids = prompt_ids(n, seed=n)
    if kind.startswith("capture"):
        from model import Explainer

        explainer = Explainer.load(model_dir)
        keep = ["*"] if kind == "capture_all" else []
        fn = lambda: explainer.analyze_ids(ids, keep=keep)  # noqa: E731
        warm = lambda: explainer.analyze_ids(ids[:1], keep=keep)  # noqa: E731
    else:
        from transformers import GPT2LMHeadModel

        hf = GPT2LMHeadModel.from_pretrained(model_dir, attn_implementation=kind).eval()
        tensor = torch.tensor([ids])
        fn = lambda: hf(tensor)  # noqa: E731
        warm = lambda: hf(tensor[:, :1])  # noqa: E731
    with torch.inference_mode():
        warm()  # page in the weights (mmapped by safetensors) and one-time allocations
    gc.collect()
    loaded_kb = _status_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    with torch.inference_mode():
        result = fn()
    peak_kb = _status_kb("VmHWM")
    out = {"kind": kind, "n": n, "loaded_mb": loaded_kb / 1024, "peak_mb": peak_kb / 1024,
           "extra_mb": (peak_kb - loaded_kb) / 1024}
    if kind.startswith("capture"):
        out["run_mb"] = result.nbytes / 2**20
    return out


def run_memory(model_dir: str, sizes: list[int]) -> list[dict]:
    rows = []
    for n in sizes:
        for kind in ("capture", "capture_all", "eager", "sdpa"):
            proc = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "--model", model_dir, "--memory-case", kind, "--n", str(n)],
                capture_output=True, text=True, timeout=300,
            )
            if proc.returncode != 0:
                print(proc.stderr[-2000:], file=sys.stderr)
                raise SystemExit(f"memory case {kind} N={n} failed")
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return rows


def run_timing(model_dir: str, sizes: list[int], repeat_scale: float) -> tuple[list[dict], dict]:
    import torch
    from transformers import GPT2LMHeadModel

    from model import Explainer

    explainer = Explainer.load(model_dir)
    hf = {impl: GPT2LMHeadModel.from_pretrained(model_dir, attn_implementation=impl).eval() for impl in ("eager", "sdpa")}

    def hf_case(impl: str, tensor, **kw):
        model = hf[impl]
        return lambda: model(tensor, **kw)

    results = []
    run_bytes = {}
    for n in sizes:
        ids = prompt_ids(n, seed=n)
        tensor = torch.tensor([ids])
        cases = {
            "capture": lambda: explainer.analyze_ids(ids),
            "capture_all": lambda: explainer.analyze_ids(ids, keep=["*"]),
            "eager": hf_case("eager", tensor),
            "sdpa": hf_case("sdpa", tensor),
            "eager_last": hf_case("eager", tensor, logits_to_keep=1),
            "sdpa_last": hf_case("sdpa", tensor, logits_to_keep=1),
        }
        names = list(cases)
        times = {name: [] for name in names}
        with torch.inference_mode():
            for name in names:  # warm-up: first-call allocations and kernels
                cases[name]()
            run_bytes[n] = {"capture": explainer.analyze_ids(ids).nbytes,
                            "capture_all": explainer.analyze_ids(ids, keep=["*"]).nbytes}
            gc.collect()
            repeats = max(2, round(REPEATS.get(n, 5) * repeat_scale))
            loop_start = time.perf_counter()
            for r in range(repeats):
                if r >= 2 and time.perf_counter() - loop_start > BUDGET_S.get(n, 30):
                    repeats = r
                    break  # a heavily loaded machine: keep the script's runtime bounded
                order = names[r % len(names):] + names[: r % len(names)]
                for name in order:
                    t0 = time.perf_counter()
                    out = cases[name]()
                    times[name].append(time.perf_counter() - t0)
                    del out
        med = {name: median(ts) for name, ts in times.items()}
        base = min(("eager", "sdpa"), key=lambda k: med[k])
        last = min(("eager_last", "sdpa_last"), key=lambda k: med[k])
        paired = [c / min(e, s) for c, e, s in zip(times["capture"], times["eager"], times["sdpa"])]
        row = {
            "n": n, "repeats": repeats, "times": times, "median": med, "baseline": base, "baseline_last": last,
            "ratio": med["capture"] / med[base],
            "ratio_paired": median(paired),
            "ratio_best": min(times["capture"]) / min(min(times["eager"]), min(times["sdpa"])),
            "ratio_all": med["capture_all"] / med[base],
            "ratio_last": med["capture"] / med[last],
        }
        results.append(row)
        print(f"\nN = {n} ({repeats} interleaved repeats; median [min..max])")
        for name in names:
            mark = "  <- baseline" if name == base else ""
            print(f"  {name:12s} {spread(times[name])}{mark}")
        print(f"  capture / {base}            = {row['ratio']:.3f}  (median of paired ratios {row['ratio_paired']:.3f}, "
              f"best/best {row['ratio_best']:.3f})")
        print(f"  capture keep=* / {base}     = {row['ratio_all']:.3f}")
        print(f"  capture / {last} (like for like) = {row['ratio_last']:.3f}")
        print(f"  run.nbytes: default {run_bytes[n]['capture'] / 2**20:.2f} MiB, keep=* {run_bytes[n]['capture_all'] / 2**20:.1f} MiB")
        sys.stdout.flush()
    return results, run_bytes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a GPT-2-small-shaped checkpoint directory (built if missing or not given)")
    parser.add_argument("--sizes", default="8,64,256,1024")
    parser.add_argument("--repeat-scale", type=float, default=1.0, help="multiply the number of repeats")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--threads", type=int, help="torch threads for the capture and the baseline alike "
                        "(default: torch's own choice, one per core); 1 is far less sensitive to other load")
    parser.add_argument("--memory-case", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.memory_case:
        print(json.dumps(memory_case(args.model, args.memory_case, args.n)))
        return 0

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    sizes = [int(s) for s in args.sizes.split(",")]
    model_dir = checkpoint_dir(args.model)
    print(f"GPT-2 small shapes, random weights, {model_dir}")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpus {os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.2f}")
    results, run_bytes = run_timing(model_dir, sizes, args.repeat_scale)
    memory = [] if args.no_memory else run_memory(model_dir, sizes)

    print("\n== Summary: capture time / plain transformers forward (faster of eager, sdpa), medians ==")
    print(f"{'N':>5} {'capture ms':>11} {'baseline ms':>12} {'base':>6} {'ratio':>6} {'paired':>7} {'best':>6} "
          f"{'keep=*':>7} {'vs last-only':>13}  target")
    for row in results:
        m = row["median"]
        target = ""
        if row["n"] in TARGET_SIZES:
            target = f"<= {TARGET}: {'PASS' if row['ratio'] <= TARGET else 'MISS'}"
        if row["n"] in TARGET_LAST_SIZES:
            target = f"vs last-only <= {TARGET_LAST}: {'PASS' if row['ratio_last'] <= TARGET_LAST else 'MISS'}"
        print(f"{row['n']:>5} {m['capture'] * 1e3:>11.1f} {m[row['baseline']] * 1e3:>12.1f} {row['baseline']:>6} "
              f"{row['ratio']:>6.3f} {row['ratio_paired']:>7.3f} {row['ratio_best']:>6.3f} {row['ratio_all']:>7.3f} {row['ratio_last']:>13.3f}  {target}")
    print("\n== Bytes a Run holds (run.nbytes) ==")
    for n, b in run_bytes.items():
        print(f"{n:>5}  default {b['capture']:>12,d} B ({b['capture'] / 2**20:7.2f} MiB)   "
              f"keep=* {b['capture_all']:>14,d} B ({b['capture_all'] / 2**20:8.1f} MiB)")
    if memory:
        print("\n== Peak memory (one subprocess per case; loaded = RSS after load and a 1-token warm-up;")
        print("   peak = VmHWM during the case; extra = peak - loaded) ==")
        print(f"{'N':>5} {'case':>12} {'loaded MiB':>11} {'peak MiB':>9} {'extra MiB':>10}")
        for row in memory:
            print(f"{row['n']:>5} {row['kind']:>12} {row['loaded_mb']:>11.0f} {row['peak_mb']:>9.0f} {row['extra_mb']:>10.0f}")
    print(f"\n(total {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""The summary table of scripts/gpu-check.sh: each figure issues #12 and #13 ask for, next to its target.

  python3 scripts/gpu_check_summary.py BENCH_GPU_JSON HF_BASELINE_TXT GPU_CHECK_LOG GPU_FINETUNE_JSON FINETUNE_TESTS_TXT

Any argument may name a missing file: that part of the table is left out. Reads bench_gpu's --json-out document,
hf_baseline.py's output (its "JSON " line), the check's log (the native GPU tests' ok / FAIL / SKIPPED lines, the
runtime's and the trainer's apart, and vitest's summary of the TypeScript GPU runtime tests),
benchmarks/gpu-finetune/run.mjs's --out document and the vitest output of the fine-tuning tests.

One row per figure: what, value, target, verdict. The verdict is "ok" or "MISSED" where the issue sets a target
and the run measured what the issue names (the full shapes on a GPU); "reported" where the issue asks for the
figure only, or where the run cannot judge it (bench_gpu --quick / --tiny, a baseline of another shape, the CUDA
simulator). Exit status 0: gpu-check.sh counts the failures of its stages itself.
"""
import json
import os
import re
import sys

SIMULATOR = "simulator"  # in the device name of the CUDA simulator (native/cuda_sim)


class Table:
    def __init__(self):
        self.rows = []

    def add(self, what, value, target, ok):
        """ok: True / False where judged, None where only reported."""
        verdict = "reported" if ok is None else "ok" if ok else "MISSED"
        self.rows.append((what, str(value), target, verdict))

    def render(self):
        w = max((len(r[0]) for r in self.rows), default=10)
        return "\n".join(f"{r[0]:<{w}}  {r[1]:<40} {r[2]:<38} {r[3]}" for r in self.rows)


def read_text(path):
    return open(path, errors="replace").read() if path and os.path.exists(path) else None


def hf_result(text):
    """The last "JSON " line of hf_baseline.py's output, or None."""
    found = None
    for line in (text or "").splitlines():
        if line.startswith("JSON "):
            found = json.loads(line[5:])
    return found


def engine_rows(t, ours, hf):
    """Issue #12's figures from bench_gpu's document (and the transformers baseline's)."""
    p = ours.get("profile")
    if not p:
        return
    simulated = SIMULATOR in ours.get("device", "")
    # The targets are for Llama-3.1-8B's shapes at full size (documents before --shape have no "shape").
    name = ours.get("shape") or ("llama-3.2-1b" if ours.get("quick") else "llama-3.1-8b")
    full_shape = name == "llama-3.1-8b" and not ours.get("quick") and not ours.get("tiny") and not simulated
    judge = (lambda ok: ok) if full_shape else (lambda ok: None)
    shape = f"{name}, {ours.get('layers')} layers" + (" (--tiny sizes)" if ours.get("tiny") else
                                                       " (--quick)" if ours.get("quick") else "")
    device = ours.get("device", "?") + (" (times mean nothing)" if simulated else "")
    t.add("engine benchmark", device, f"{shape}, {p['seqs']}x{p['len']} tokens", None)
    g = ours.get("gemm_size", 8192)
    t.add(f"profiling MFU vs cuBLASLt {g}^3 bf16", f"{p['mfu_vs_gemm']:.3f} ({p['tflops']:.1f} of "
          f"{ours.get('gemm_tflops', 0):.1f} TFLOP/s)", ">= 0.60", judge(p["mfu_vs_gemm"] >= 0.6))
    t.add("statistics overhead", f"x{p['stats_overhead']:.3f}", "<= 1.03", judge(p["stats_overhead"] <= 1.03))
    t.add("intervention overhead", f"x{p['intervention_overhead']:.3f}", "<= 1.02",
          judge(p["intervention_overhead"] <= 1.02))
    if "kojima_overhead" in p:  # (documents of bench_gpu before it have none)
        t.add("intervention overhead, 7 sites (Kojima)", f"x{p['kojima_overhead']:.3f}",
              "<= 1.02", judge(p["kojima_overhead"] <= 1.02))
    if hf:
        r = p["tokens_per_s_stats"] / hf["tokens_per_s_hooked"]
        same = hf.get("batch") == p["seqs"] and hf.get("seq_len") == p["len"] and hf.get("shape") == name and \
            hf.get("layers", ours.get("layers")) == ours.get("layers") and not ours.get("tiny")
        target = ">= 1.3" if same else ">= 1.3 (baseline of another shape or batch)"
        t.add("profiling vs transformers + hooks",
              f"{r:.2f}x ({p['tokens_per_s_stats']:.0f} vs {hf['tokens_per_s_hooked']:.0f} tok/s)", target,
              judge(r >= 1.3) if same else None)
    if "hours_per_100m_tokens" in p:
        full = ours.get("shape_layers")
        scaled = f", scaled to its {full} layers" if full and full != ours.get("layers") else ""
        t.add("hours per language, 100M tokens", f"{p['hours_per_100m_tokens']:.2f} h ({shape}{scaled})",
              "seed papers: 7-8 h (RTX 3090, vLLM)", None)
    a = ours.get("attention")
    if a:
        peak = ours.get("gemm_tflops") or float("nan")
        for part, key in (("forward", "fwd"), ("trainer backward", "bwd")):
            t.add(f"attention {part} alone ({a['seqs']}x{a['len']})",
                  f"{a[key + '_tflops']:.1f} TFLOP/s ({a[key + '_tflops'] / peak:.2f} of the GEMM rate)", "report", None)
    steps = ours.get("steps")
    if steps:  # bench_gpu's "where the time goes" table, its three largest steps
        total = sum(s["ms_stats"] for s in steps) or float("nan")
        top = sorted(steps, key=lambda s: -s["ms_stats"])[:3]
        t.add(f"largest steps ({p['seqs']}x{p['len']}, statistics)",
              ", ".join(f"{s['step']} {100 * s['ms_stats'] / total:.0f}%" for s in top), "report", None)
    for d in ours.get("decode", []):
        t.add(f"decode batch {d['batch']} vs weight-read limit", f"{d['ratio_vs_bandwidth_limit']:.2f} "
              f"({d['ms_per_step']:.2f} vs {d['weight_read_limit_ms']:.2f} ms, logits to the host)", "report", None)
        if "greedy_ms_per_step" in d:
            t.add(f"greedy decode batch {d['batch']} vs weight-read limit",
                  f"{d['greedy_ratio_vs_bandwidth_limit']:.2f} ({d['greedy_ms_per_step']:.2f} ms, next token picked "
                  f"on the device)", "report", None)
    m = ours.get("memory")
    if m:
        t.add("device bytes used vs stated", f"{m['ratio_used_vs_stated']:.3f}", "report", None)


def log_section(log, title):
    """The part of the check's log from its "=== <title>" line to the next section's."""
    found = re.search(rf"^=== {re.escape(title)}.*?(?=^=== |\Z)", log or "", re.M | re.S)
    return found.group(0) if found else ""


def native_test_rows(t, log):
    """The native GPU tests' ok / FAIL / SKIPPED lines in the check's log, the runtime's (#12) and the trainer's
    (#13) apart; the compute-sanitizer rerun is another section, not counted."""
    lines = re.findall(r"^(ok|FAIL|SKIPPED)\s+(gpu_\w+)", log_section(log, "native GPU tests"), re.M)
    for what, trainer in (("native GPU runtime tests", False), ("fine-tuning: native GPU trainer tests", True)):
        mine = [v for v, name in lines if bool(re.match(r"gpu_(train|gemm_backward)", name)) == trainer]
        count = {k: mine.count(k) for k in ("ok", "FAIL", "SKIPPED")}
        if sum(count.values()):
            t.add(what, f"{count['ok']} passed, {count['FAIL']} failed, {count['SKIPPED']} skipped", "all pass",
                  count["FAIL"] == 0 and count["SKIPPED"] == 0)


def vitest_rows(t, what, text, no_gpu_line):
    """vitest's summary of GPU test files: passed when none failed and none were skipped for want of a GPU. Without
    a usable device each GPU test file prints one line (no_gpu_line: <reason>) and skips its GPU suites; its no-GPU
    checks still run, so the file itself need not be reported as skipped."""
    if not text:
        return
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    tests, files = re.search(r"^\s*Tests\s+(.*)", plain, re.M), re.search(r"^\s*Test Files\s+(.*)", plain, re.M)
    if tests:
        no_gpu = no_gpu_line in plain or bool(files and "skipped" in files.group(1))
        t.add(what, tests.group(1).strip()[:38], "none failed, none skipped for want of a GPU",
              "failed" not in tests.group(1) and not no_gpu)


def finetune_bench_rows(t, ft):
    for c in ft.get("checks", []):
        t.add(f"fine-tuning: {c['what']}", c["value"], c["target"], c["ok"])
    for sk in ft.get("skipped", []):
        t.add(f"fine-tuning: skipped {sk['what']}", sk["why"][:40], "-", None)
    for f in ft.get("failed", []):
        t.add(f"fine-tuning: {f['what']}", f["why"][:40], "runs", False)


def main(argv):
    if len(argv) != 6:
        print("usage: gpu_check_summary.py BENCH_GPU_JSON HF_BASELINE_TXT GPU_CHECK_LOG GPU_FINETUNE_JSON "
              "FINETUNE_TESTS_TXT", file=sys.stderr)
        return 1
    bench, hf_txt, log, ft_json, ft_tests = argv[1:]
    t = Table()
    try:
        ours = json.load(open(bench))
    except Exception as e:  # a missing or half-written document: the rest of the table still prints
        ours = {}
        print(f"no engine benchmark results ({e})")
    engine_rows(t, ours, hf_result(read_text(hf_txt)))
    log_text = read_text(log)
    native_test_rows(t, log_text)
    vitest_rows(t, "TypeScript GPU runtime tests", log_section(log_text, "the TypeScript GPU tests"),
                "gpu-runtime tests skipped:")
    vitest_rows(t, "fine-tuning: TypeScript GPU tests", read_text(ft_tests), "gpu-finetune tests skipped:")
    text = read_text(ft_json)
    if text is not None:
        try:
            finetune_bench_rows(t, json.loads(text))
        except Exception as e:
            print(f"fine-tuning benchmark results unreadable ({e})")
    print(t.render())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

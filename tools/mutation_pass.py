"""A hand-written mutation pass: would the tests notice a plausible bug?

Each mutant is one small edit to one library module (an operator, a bound, a constant, a branch):
the kind of slip a change could make. The pass copies the repository's files (tracked and
untracked, not ignored) into a temporary folder, applies one mutant at a time there, runs the
test files that cover its module (`-x`, one worker, the fast tier) and counts the mutant killed
when they fail. The working tree is never edited, so a DVC pipeline running beside it sees no
change to its code dependencies.

    .venv/bin/python tools/mutation_pass.py                  # every module
    .venv/bin/python tools/mutation_pass.py report sparsity  # some

Prints killed/total per module and each survivor. A survivor is a test to write (or, rarely, a
mutant that changes nothing observable: say why in its description).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# module -> (the test files that cover it, [(file, original text, mutated text, what the mutant does)])
MUTANTS: dict[str, tuple[list[str], list[tuple[str, str, str, str]]]] = {
    "significance": (["tests/test_significance.py"], [
        ("prunelab/significance.py", "if self.n < 2:", "if self.n < 3:", "no interval below 3 pairs instead of 2"),
        ("prunelab/significance.py", "cross = cross - n / 2 if cross > n / 2 else min(cross, 0)",
         "cross = cross if cross > n / 2 else min(cross, 0)", "Newcombe's phi without its continuity correction"),
        ("prunelab/significance.py", "n10 + n01, 0.5).pvalue", "n10 + n01, 0.4).pvalue", "McNemar against p = 0.4"),
        ("prunelab/significance.py", "running = max(running, min(1.0, (m - rank) * pvalues[i]))",
         "running = min(1.0, (m - rank) * pvalues[i])", "Holm without its monotone step"),
        ("prunelab/significance.py", "z = stats.norm.ppf(0.5 + CONFIDENCE / 2)", "z = stats.norm.ppf(CONFIDENCE)",
         "Wilson's z one-sided"),
        ("prunelab/significance.py", "return stats.nct.sf(crit, df, nc) + stats.nct.sf(crit, df, -nc) - power",
         "return stats.nct.sf(crit, df, nc) - power", "power without the lower tail"),
        ("prunelab/significance.py", "if len(d) < 2 or np.all(d == d[0]):", "if len(d) < 2:",
         "equal differences get a zero-width interval"),
        ("prunelab/significance.py", '("A better" if self.mean > 0 else "B better")',
         '("A better" if self.mean < 0 else "B better")', "the verdict names the wrong side"),
    ]),
    "report": (["tests/test_report.py", "tests/test_significance.py"], [
        ("prunelab/report.py", 'return "+0.00" if float(text) == 0 else', 'return text if float(text) == 0 else',
         "negative zero printed as -0.00"),
        ("prunelab/report.py", "if a.baselines != b.baselines:", "if False:", "rows of other baselines paired"),
        ("prunelab/report.py", "several = len(a.seeds.split()) > 1 and a.seeds == b.seeds",
         "several = len(a.seeds.split()) > 1", "rows paired by seed although their seeds differ"),
        ("prunelab/report.py", "if several and (_drawn_per_seed(a) or _drawn_per_seed(b)):", "if False:",
         "random's draws paired by image (the first draw), not by seed"),
        ("prunelab/report.py", 'return "–" if p != p else ("< 0.001" if p < 0.001 else f"{p:.3f}")',
         'return "–" if p != p else f"{p:.3f}"', "p below 0.001 printed as 0.000"),
        ("prunelab/report.py", "pruned_top1_std=statistics.stdev(tops)", "pruned_top1_std=statistics.pstdev(tops)",
         "the spread over baselines as a population sd"),
        ("prunelab/report.py", "significance.detectable(d.sd, d.n, alpha / max(m, 1))",
         "significance.detectable(d.sd, d.n, alpha)", "the detectable difference at 5%, not 5%/m"),
    ]),
    "sparsity": (["tests/test_sparsity.py", "tests/test_hostile.py"], [
        ("prunelab/sparsity.py", "if total > MAX_RATES:", "if total > MAX_RATES + 1:", "the rate-count cap off by one"),
        ("prunelab/sparsity.py", "elif isinstance(r, (int, float)) and not isinstance(r, bool):",
         "elif isinstance(r, (int, float)):", "booleans accepted as rates in a list"),
        ("prunelab/sparsity.py", 'f"[{r!r}]"', 'f"[{r:g}]"', "compact writes rates with %g (digits lost)"),
        ("prunelab/sparsity.py", "if len(spec) > MAX_RATES:", "if len(spec) > 10 * MAX_RATES:",
         "the list-length cap loosened tenfold"),
        ("prunelab/sparsity.py", "if not 0.0 <= r < 1.0:", "if not 0.0 <= r <= 1.0:", "a rate of 1 accepted"),
        ("prunelab/sparsity.py", "if not 0 < value < 1:", "if not 0 <= value < 1:", "auto:0 accepted"),
        ("prunelab/sparsity.py", "if nonzero and abs(r) < sys.float_info.min:", "if False:",
         "1e-400 read as an unpruned 0"),
    ]),
    "counting": (["tests/test_counting.py", "tests/test_alexnet_mobilenet.py"], [
        ("prunelab/counting.py", "macs = out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]",
         "macs = out.numel() * m.in_channels * m.kernel_size[0] * m.kernel_size[1]", "a depthwise conv's groups ignored"),
        ("prunelab/counting.py", "m.kernel_size[0] * m.kernel_size[1]", "m.kernel_size[0] * m.kernel_size[0]",
         "a rectangular kernel's second side"),
        ("prunelab/counting.py", "totals[\"flops_paper\"] += 2 * inp[0].numel()", "totals[\"flops_paper\"] += inp[0].numel()",
         "one op per BatchNorm element, not two"),
        ("prunelab/counting.py", "totals[\"flops_paper\"] += macs + (out.numel() if m.bias is not None else 0)",
         "totals[\"flops_paper\"] += macs", "a conv bias not counted"),
        ("prunelab/counting.py", "        totals[\"flops_paper\"] += inp[0].numel()\n", "        pass\n",
         "the average pool not counted"),
        ("prunelab/counting.py", "return 100.0 * (base - pruned) / base", "return 100.0 * (base - pruned) / pruned",
         "the reduction relative to the pruned count"),
    ]),
    "surgery": (["tests/test_surgery.py"], [
        ("prunelab/surgery.py", "order = torch.sort(scores.double(), descending=True, stable=True).indices",
         "order = torch.sort(scores.double(), descending=False, stable=True).indices", "the lowest scores kept"),
        ("prunelab/surgery.py", "return order[:keep].sort().values", "return order[:keep]", "kept indices not ascending"),
        ("prunelab/surgery.py", "if not 1 <= keep <= scores.numel():", "if not 0 <= keep <= scores.numel():",
         "keeping no channel allowed"),
        ("prunelab/surgery.py", "return (keep[:, None] * positions + torch.arange(positions)).flatten()",
         "return (keep[:, None] + torch.arange(positions)).flatten()", "a flattening consumer's columns not strided"),
        ("prunelab/surgery.py", "if module in out_idx and t.ndim >= 1:", "if module in out_idx and t.ndim >= 2:",
         "biases and BatchNorm vectors not pruned"),
        ("prunelab/surgery.py", 'if module in in_idx and leaf == "weight":', "if module in in_idx and leaf == \"bias\":",
         "consumers' input columns not pruned"),
    ]),
    "criteria": (["tests/test_criteria.py", "tests/test_snpfi.py"], [
        ("prunelab/criteria/chip.py", "if c <= m:", "if c < m:", "the square case through the SVD branch"),
        ("prunelab/criteria/chip.py", "ci = q.div_(p).mul_(t.sqrt()[:, None, :]).sum(-1) * (STEP / math.pi)",
         "ci = q.div_(p).mul_(t.sqrt()[:, None, :]).sum(-1) * (STEP / 2)", "the integral's constant"),
        ("prunelab/criteria/chip.py", "return channel_independence_per_image(fmaps).mean(0)",
         "return channel_independence_per_image(fmaps).sum(0)", "CHIP summed over images, not averaged"),
        ("prunelab/criteria/chip.py", "p.add_(lev_gap[:, :, None] / t[:, None, :])", "pass",
         "the leverage term dropped (C > M)"),
        ("prunelab/criteria/hrank.py", "return channel_rank_per_image(fmaps).mean(0)",
         "return channel_rank_per_image(fmaps).amax(0)", "HRank's max rank, not its mean"),
        ("prunelab/criteria/weights.py", "m.weight.detach().abs().flatten(1).sum(1)",
         "m.weight.detach().square().flatten(1).sum(1)", "L2 squared instead of L1"),
        ("prunelab/criteria/weights.py", "gen = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(g.name.encode()))",
         "gen = torch.Generator().manual_seed(seed)", "every group draws the same random scores"),
    ]),
    "sensitivity": (["tests/test_sensitivity.py"], [
        ("prunelab/sensitivity.py", "better = candidate[sources] < new[targets]", "better = candidate[sources] <= new[targets]",
         "a tie goes to the later column"),
        ("prunelab/sensitivity.py", "need = max(0, math.ceil(target / RESOLUTION - 1e-9))",
         "need = max(0, math.floor(target / RESOLUTION))", "the target rounded down"),
        ("prunelab/sensitivity.py", "if reached >= target_pct:", "if reached >= target_pct - 1:", "a shortfall of 1 point accepted"),
        ("prunelab/sensitivity.py", "drop[i, k] = round((baseline_top1 - float(r[\"top1\"])) * images / 100)",
         "drop[i, k] = round((baseline_top1 - float(r[\"top1\"])) * images / 1000)", "the drop in tenths of images"),
        ("prunelab/sensitivity.py", "cost = drop + loss / (1.0 + slots * np.abs(loss).max() + 1e-12)", "cost = drop + loss",
         "the loss tie-break outweighs whole images"),
        ("prunelab/sensitivity.py", "return [rate if i == slot else 0.0 for i in range(slots)]",
         "return [rate if i <= slot else 0.0 for i in range(slots)]", "a slot's rate list prunes the earlier slots too"),
    ]),
    "config": (["tests/test_config.py", "tests/test_hostile.py"], [
        ("prunelab/config.py", "resolved.update(seed=baseline, data_seed=params[\"seed\"], baseline=baseline)",
         "resolved.update(seed=params[\"seed\"], data_seed=params[\"seed\"], baseline=baseline)",
         "every baseline trains with the data's seed"),
        ("prunelab/config.py", "MAX_FAMILY = 10", "MAX_FAMILY = 11", "a family of 11 contrasts accepted"),
        ("prunelab/config.py", "MAX_SEEDS = 100", "MAX_SEEDS = 1000", "the seeds cap loosened"),
        ("prunelab/config.py", "if baseline not in params[\"baselines\"]:", "if False:", "an unlisted --baseline accepted"),
        ("prunelab/config.py", "permutations: _int_in(2, MAX_PERMUTATIONS)", "permutations: _int_in(1, MAX_PERMUTATIONS)",
         "one SNPFI permutation accepted (no antithetic pair)"),
        ("prunelab/config.py", "Field(gt=0, lt=1)], f\"must be a list of 1 to {MAX_SENSITIVITY_RATES}",
         "Field(ge=0, lt=1)], f\"must be a list of 1 to {MAX_SENSITIVITY_RATES}", "a sensitivity rate of 0 accepted"),
    ]),
}


def copy_repository(dst: Path) -> None:
    """The files git knows or would add (tracked and untracked, not ignored), as they are now."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file() and not src.is_symlink():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / name)
        elif src.is_symlink():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.readlink(src), dst / name)


def run_tests(copy: Path, tests: list[str], timeout: int) -> tuple[bool, float]:
    """(whether the tests pass, seconds) in the copy, its prunelab first on the path."""
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
    start = time.perf_counter()
    try:
        r = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-n", "0", "-p", "no:cacheprovider", *tests],
                           cwd=copy, env=env, capture_output=True, timeout=timeout)
        passed = r.returncode == 0
    except subprocess.TimeoutExpired:  # a mutant that hangs the tests is caught by them
        passed = False
    return passed, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help=f"modules to mutate, of {', '.join(MUTANTS)} (default: all)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds a module's tests may take per mutant")
    args = parser.parse_args()
    modules = args.modules or list(MUTANTS)
    if unknown := [m for m in modules if m not in MUTANTS]:
        parser.error(f"no mutants for {', '.join(unknown)}; modules: {', '.join(MUTANTS)}")
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "repo"
        copy_repository(copy)
        summary = []
        for module in modules:
            tests, mutants = MUTANTS[module]
            passed, seconds = run_tests(copy, tests, args.timeout)
            if not passed:
                raise SystemExit(f"{module}: {' '.join(tests)} fail without a mutant; fix them first")
            killed, survivors = 0, []
            for path, original, mutated, what in mutants:
                source = (copy / path).read_text()
                if source.count(original) != 1:
                    raise SystemExit(f"{module}: {original!r} occurs {source.count(original)} times in {path}, not once")
                (copy / path).write_text(source.replace(original, mutated))
                try:
                    survived, _ = run_tests(copy, tests, args.timeout)
                finally:
                    (copy / path).write_text(source)
                killed += not survived
                if survived:
                    survivors.append(what)
                print(f"{module}: {'SURVIVED' if survived else 'killed  '} {what}", flush=True)
            summary.append((module, killed, len(mutants), survivors))
    print("\nmodule        killed/total")
    for module, killed, total, survivors in summary:
        print(f"{module:<13} {killed}/{total}" + "".join(f"\n  survived: {s}" for s in survivors))


if __name__ == "__main__":
    main()

"""CHIP's results table (PAPER.md): the rows as the paper gives them, counts computed by our code;
and SNPFI's three systems at its 60% FLOPs budget (the uniform rates that reach it).

Only the configurations and the paper's reported top-1 are data here; params, MACs and FLOPs
come from building each architecture and counting it (prunelab.counting).
"""

from __future__ import annotations

from prunelab import counting, models
from prunelab.sparsity import parse_sparsity

# (model, CHIP sparsity or None for the baseline, top-1 the paper reports)
CHIP_ROWS = [
    ("resnet56", None, 93.26),
    ("resnet56", "[0.]+[0.15]*2+[0.4]*27", 94.16),
    ("resnet56", "[0.]+[0.4]*2+[0.5]*9+[0.6]*9+[0.7]*9", 92.43),
    ("resnet110", None, 93.50),
    ("resnet110", "[0.]+[0.2]*2+[0.3]*18+[0.35]*36", 94.50),
    ("resnet110", "[0.]+[0.22]*2+[0.35]*18+[0.45]*36", 94.44),
    ("resnet110", "[0.]+[0.4]*2+[0.5]*18+[0.65]*36", 93.23),
    ("vgg16", None, 93.96),
    ("vgg16", "[0.21]*7+[0.75]*5", 93.86),
    ("vgg16", "[0.3]*7+[0.75]*5", 93.72),
    ("vgg16", "[0.45]*7+[0.78]*5", 93.18),
    ("resnet50", None, 76.15),
    ("resnet50", "[0.]+[0.1]*3+[0.35]*16", 76.41),
    ("resnet50", "[0.]+[0.12]*3+[0.38]*16", 76.35),
    ("resnet50", "[0.]+[0.25]*3+[0.5]*16", 75.26),
    ("resnet50", "[0.]+[0.5]*3+[0.6]*16", 73.30),
]
NAMES = {"resnet56": "ResNet-56", "resnet110": "ResNet-110", "vgg16": "VGG-16", "resnet50": "ResNet-50",
         "alexnet": "AlexNet", "mobilenet_v1": "MobileNetV1"}

# SNPFI's systems (PAPER.md: "about 60% of FLOPs removed" on AlexNet, MobileNetV1 and ResNet-50
# over MNIST, CIFAR-10 and ImageNet): (model, dataset, uniform rates removing about 60% of the
# FLOPs). Every criterion but SNPFI prunes at these rates; SNPFI picks its own widths for the
# same MACs. ResNet-50's stem stays whole, as in CHIP's rows.
SNPFI_ROWS = [
    ("alexnet", "mnist", "[0.37]*7"),
    ("mobilenet_v1", "cifar10", "[0.4]*13"),
    ("resnet50", "imagenet", "[0.]+[0.4]*19"),
]
DATA_INPUT = {"mnist": ((1, 28, 28), 10), "cifar10": ((3, 32, 32), 10), "imagenet": ((3, 224, 224), 1000)}
DATA_NAMES = {"mnist": "MNIST", "cifar10": "CIFAR-10", "imagenet": "ImageNet"}


def row_counts(arch: str, sparsity: str | None, data: str | None = None) -> dict[str, int]:
    """Counts of arch at these rates (None: unpruned) on the paper's input, or on `data`'s."""
    shape, classes = DATA_INPUT[data] if data else models.paper_input(arch)
    widths = models.pruned_widths(arch, parse_sparsity(sparsity)) if sparsity else None
    return counting.count(models.build_model(arch, widths, shape[0], classes), shape)


def _cell(value: int, base: int, unit: float, suffix: str) -> str:
    return f"{value / unit:.2f}{suffix} ({100 * (base - value) / base:.1f}%)"


def counts_table() -> str:
    """Markdown: every CHIP row with params, MACs and paper-convention FLOPs and their reductions."""
    lines = ["| Model | Sparsity | Params (↓%) | MACs (↓%) | FLOPs, paper convention (↓%) | Top-1 in the paper |",
             "|---|---|---:|---:|---:|---:|"]
    base = {}
    for arch, sparsity, top1 in CHIP_ROWS:
        c = row_counts(arch, sparsity)
        base.setdefault(arch, c)
        b = base[arch]
        unit, suffix = (1e9, "B") if arch == "resnet50" else (1e6, "M")
        lines.append(f"| {NAMES[arch]} | {f'`{sparsity}`' if sparsity else 'baseline'} | "
                     f"{_cell(c['params'], b['params'], 1e6, 'M')} | {_cell(c['macs'], b['macs'], unit, suffix)} | "
                     f"{_cell(c['flops_paper'], b['flops_paper'], unit, suffix)} | {top1:.2f} |")
    return "\n".join(lines) + "\n"


def snpfi_counts_table() -> str:
    """Markdown: SNPFI's systems, unpruned and at the uniform rates of its 60% budget."""
    lines = ["| Model | Data | Sparsity | Params (↓%) | MACs (↓%) | FLOPs, paper convention (↓%) |",
             "|---|---|---|---:|---:|---:|"]
    for arch, data, sparsity in SNPFI_ROWS:
        b = row_counts(arch, None, data)
        unit, suffix = (1e9, "B") if arch == "resnet50" else (1e6, "M")
        for spec, c in ((None, b), (sparsity, row_counts(arch, sparsity, data))):
            lines.append(f"| {NAMES[arch]} | {DATA_NAMES[data]} | {f'`{spec}`' if spec else 'baseline'} | "
                         f"{_cell(c['params'], b['params'], 1e6, 'M')} | {_cell(c['macs'], b['macs'], unit, suffix)} | "
                         f"{_cell(c['flops_paper'], b['flops_paper'], unit, suffix)} |")
    return "\n".join(lines) + "\n"


def reported_top1(arch: str, sparsity: str) -> tuple[float, float] | None:
    """(baseline, pruned) top-1 the paper reports for arch at these rates, or None. Rates are
    compared as parsed lists, so '[0.4]*2' and '[0.4,0.4]' are the same row."""
    rates = parse_sparsity(sparsity)
    baseline = next((top1 for a, s, top1 in CHIP_ROWS if a == arch and s is None), None)
    for a, s, top1 in CHIP_ROWS:
        if a == arch and s is not None and parse_sparsity(s) == rates:
            return baseline, top1
    return None

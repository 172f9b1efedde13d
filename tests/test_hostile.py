"""Hostile input and faults: inputs bounded before anything is allocated, outputs inside the
project with the usual permissions, writes that lose nothing on a full disk or a kill, smoke data
checked before it is unpickled, and a copied checkout's .venv noticed by make."""

import copy
import multiprocessing
import os
import pickle
import shutil
import signal
import subprocess
import tracemalloc
from pathlib import Path

import pytest
import torch
import yaml

from helpers import BIN, ROOT, copy_project, stage
from prunelab import checkpoint, config, data, models, pipeline, synthetic
from prunelab.errors import PrunelabError, short
from prunelab.sparsity import MAX_RATES, SparsityError, parse_sparsity

DEFAULT = yaml.safe_load((ROOT / "params.yaml").read_text())


def params_with(**overrides) -> dict:
    """The default params with dotted keys replaced: {"train.epochs": 3}."""
    params = copy.deepcopy(DEFAULT)
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        node = params
        for p in parents:
            node = node[p]
        node[leaf] = value
    return params


def peak_bytes(fn) -> int:
    """Peak Python heap allocation while fn() runs (it may raise a PrunelabError)."""
    tracemalloc.start()
    try:
        fn()
    except PrunelabError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


# --- 1. bounds before allocation


@pytest.mark.parametrize("spec", ["[0.]*300000000", "[0.]*1000000000", "[0.1, 0.2]*99999999999999999999999",
                                  "[0.]*" + "9" * 10000, [0.0] * 100_000])
def test_a_repeat_count_past_every_model_is_refused_without_expanding_it(spec):
    with pytest.raises(SparsityError, match=f"{MAX_RATES}"):
        parse_sparsity(spec)
    assert peak_bytes(lambda: parse_sparsity(spec)) < 1 << 20  # the list itself would be GBs


def test_the_rate_cap_admits_every_arch():
    # each arch's compact list length, found by asking the arch itself
    for arch in models.ARCHS:
        accepted = [n for n in range(1, MAX_RATES + 1) if _takes(arch, n)]
        assert len(accepted) == 1, arch
        assert parse_sparsity(f"[0.1]*{accepted[0]}") == [0.1] * accepted[0]


def _takes(arch: str, n: int) -> bool:
    try:
        models.group_rates(arch, [0.1] * n)
        return True
    except ValueError:
        return False


@pytest.mark.parametrize("spec", ["[1e-400]", "[0.]+[1e-400]*2", "[1e-310]", "[-1e-400]", ["1e-400"], ["2e-320"]])
def test_a_nonzero_rate_that_does_not_survive_parsing_is_refused(spec):
    with pytest.raises(SparsityError, match="reads as"):
        parse_sparsity(spec)


def test_zero_written_any_way_is_a_rate():
    assert parse_sparsity("[0e-400, 0.0, 00., .0]") == [0.0] * 4
    assert parse_sparsity(["0", "1e-3"]) == [0.0, 1e-3]


@pytest.mark.parametrize("bad", [[True], [10**400], [{"a": 1}], [None], "[0.1]" + " " * 100_000])
def test_odd_rate_lists_get_the_projects_error(bad):
    with pytest.raises(SparsityError):
        parse_sparsity(bad)


# (key, value past the bound, the bound itself: accepted)
BOUNDS = [
    ("seed", 2**32, 2**32 - 1),
    ("seed", 2**70, 0),
    ("data.image_size", 65, 64),  # digits
    ("data.eval_batch_size", config.MAX_BATCH + 1, config.MAX_BATCH),
    ("train.batch_size", config.MAX_BATCH + 1, config.MAX_BATCH),
    ("train.epochs", config.MAX_EPOCHS + 1, 1),
    ("finetune.epochs", 10**30, 1),
    ("train.warmup_epochs", config.MAX_EPOCHS + 1, 0),
    ("features.num_images", config.MAX_FEATURE_IMAGES + 1, config.MAX_FEATURE_IMAGES),
    ("features.batch_size", config.MAX_BATCH + 1, config.MAX_BATCH),
    ("snpfi.calibration_images", config.MAX_CALIBRATION_IMAGES + 1, config.MAX_CALIBRATION_IMAGES),
    ("snpfi.permutations", config.MAX_PERMUTATIONS + 1, config.MAX_PERMUTATIONS),
    ("latency.batch_sizes", [1, config.MAX_BATCH + 1], [1, config.MAX_BATCH]),
    ("latency.batch_sizes", [1] * (config.MAX_LATENCY_BATCHES + 1), [1] * config.MAX_LATENCY_BATCHES),
    ("latency.warmup", config.MAX_LATENCY_PASSES + 1, config.MAX_LATENCY_PASSES),
    ("latency.repeats", config.MAX_LATENCY_PASSES + 1, config.MAX_LATENCY_PASSES),
]


@pytest.mark.parametrize("key,bad,good", BOUNDS, ids=[f"{k}={short(b)[:20]}" for k, b, _ in BOUNDS])
def test_params_past_their_bound_are_refused_naming_the_key(key, bad, good):
    # image counts are also bounded by the training split: Fashion-MNIST's 60,000 hold either bound
    data = ({"data.name": "fashion_mnist", "data.image_size": 28, "data.train_subset": None}
            if key in ("features.num_images", "snpfi.calibration_images") else {})
    with pytest.raises(config.ConfigError, match=f"^{key}: ") as e:
        config.validate(params_with(**data, **{key: bad}))
    assert "\n" not in str(e.value) and len(str(e.value)) < 300
    assert "training split" not in str(e.value)  # the bound of the key itself, not the split's
    config.validate(params_with(**data, **{key: good}))


def test_every_dataset_has_an_image_size_bound():
    assert set(data.DATASETS) <= set(config.MAX_IMAGE_SIZE)


def test_a_huge_value_is_shown_as_a_short_prefix_in_bounded_memory():
    bomb = ["lol"] * 9
    for _ in range(9):  # 9**10 items once expanded, a few hundred objects in memory
        bomb = [bomb] * 9
    params = params_with(seed=bomb)
    with pytest.raises(config.ConfigError, match="^seed: ") as e:
        config.validate(params)
    assert len(str(e.value)) < 200
    assert peak_bytes(lambda: config.validate(params)) < 1 << 20
    for value in (10**5000, "x" * 10**6, b"y" * 10**6, {i: i for i in range(10**5)}):
        assert len(short(value)) <= 60


def _anchor_bomb(levels: int) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]")
    return "\n".join(lines) + "\n"


HOSTILE_FILES = {
    "anchor bomb": (_anchor_bomb(9) + yaml.safe_dump(params_with()).replace("seed: 0", "seed: *a8"), "values"),
    "self-holding anchor": (yaml.safe_dump(params_with()).replace("seed: 0", "seed: &c [*c]"), "holds itself"),
    "deep brackets": (yaml.safe_dump(params_with()).replace("seed: 0", "seed: " + "[" * 5000 + "]" * 5000),
                      "nested"),
    "deep indentation": ("".join(" " * i + f"k{i}:\n" for i in range(200)) + " " * 200 + "v: 1\n", "indented"),
    "4301-digit integer": (yaml.safe_dump(params_with()).replace("seed: 0", "seed: " + "9" * 4301), "seed|usable"),
    "big file": ("#" * (config.MAX_PARAMS_BYTES + 1), "bytes"),
    "not UTF-8": (b"seed: \xff\xfe\n", "YAML"),
    # YAML keeps the last of two equal keys silently (seed 7 would run); DVC refuses such a file
    "duplicate key": (yaml.safe_dump(params_with()).replace("seed: 0\n", "seed: 0\nseed: 7\n"),
                      r"key 'seed' appears twice in one mapping \(lines \d+ and \d+\); keep one"),
    "duplicate nested key": (yaml.safe_dump(params_with()).replace("  epochs:", "  lr: 0.5\n  epochs:"),
                             "key 'lr' appears twice"),
}


@pytest.mark.parametrize("name", HOSTILE_FILES)
def test_hostile_params_files_get_one_line_in_bounded_memory(tmp_path, name):
    text, expected = HOSTILE_FILES[name]
    path = tmp_path / "params.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(config.ConfigError, match=expected) as e:
        config.load_any(path)
    assert "\n" not in str(e.value) and len(str(e.value)) < 400
    assert peak_bytes(lambda: config.load_any(path)) < 64 << 20


def test_make_repro_s_check_refuses_an_anchor_bomb_before_dvc_reads_it(tmp_path):
    """`dvc status` expands a YAML anchor bomb with DVC's own reader (GBs); `prunelab check`, which
    `make repro` and `make pull` run first (tests/test_cli.py checks the order), refuses it in one
    line, exit 2, in a bounded time (the timeout), whatever it would expand to."""
    path = tmp_path / "params.yaml"
    path.write_text(HOSTILE_FILES["anchor bomb"][0])
    r = subprocess.run([str(BIN / "prunelab"), "check", "--params", str(path)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(f"error: {path}: holds more than 20000 values with its YAML aliases expanded"), r.stderr


def test_a_stage_refuses_a_seed_past_numpy_with_one_line_and_exit_2(tmp_path):
    project = copy_project(tmp_path / "p", seed=2**70)
    r = stage(project, "train_baseline")
    assert r.returncode == 2 and r.stderr.startswith("error: seed: ") and r.stderr.count("\n") == 1, r.stderr


# --- 4. outputs inside the project


@pytest.mark.parametrize("key,value", [("results", "/"), ("results", "../outside"), ("baseline", "/tmp/m.pt"),
                                       ("metrics", "results/../../x"), ("scores", "a\0b")])
def test_output_paths_outside_the_project_are_refused_naming_the_key(tmp_path, key, value):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params_with(**{f"paths.{key}": value})))
    with pytest.raises(config.ConfigError, match=f"^paths.{key}: "):
        config.load_any(path)


def test_a_symlink_out_of_the_project_is_refused_and_data_may_be_anywhere(tmp_path):
    project = tmp_path / "p"
    project.mkdir()
    (project / "out").symlink_to(tmp_path)
    path = project / "params.yaml"
    path.write_text(yaml.safe_dump(params_with(**{"paths.results": "out/results"})))
    with pytest.raises(config.ConfigError, match="^paths.results: .*outside the project"):
        config.load_any(path)
    path.write_text(yaml.safe_dump(params_with(**{"paths.data": "/", "paths.results": "./deep/../results"})))
    assert config.load_any(path)["paths"]["data"] == "/"


def test_paper_outputs_and_experiment_names_stay_inside(tmp_path):
    paper = yaml.safe_load((ROOT / "paper" / "params.yaml").read_text())
    path = tmp_path / "params.yaml"
    for bad, key in ((("paths", "runs", "../runs"), "paths.runs"), (("paths", "results", "/"), "paths.results")):
        edited = copy.deepcopy(paper)
        edited[bad[0]][bad[1]] = bad[2]
        path.write_text(yaml.safe_dump(edited))
        with pytest.raises(config.ConfigError, match=f"^{key}: "):
            config.load_any(path)
    edited = copy.deepcopy(paper)
    name = next(iter(edited["experiments"]))
    edited["experiments"]["../../evil"] = edited["experiments"].pop(name)
    path.write_text(yaml.safe_dump(edited))
    with pytest.raises(config.ConfigError, match="^experiments: experiment name"):
        config.load_any(path)


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_outputs_get_0666_minus_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        pipeline.write_json(tmp_path / "m.json", {"a": 1})
        checkpoint.torch_save(tmp_path / "c.pt", {"x": torch.zeros(2)})
        folder = synthetic.write_mnist(tmp_path / "d")
    finally:
        os.umask(old)
    for f in (tmp_path / "m.json", tmp_path / "c.pt", *folder.iterdir()):
        assert (f.stat().st_mode & 0o777) == 0o666 & ~umask, f
    assert (folder.stat().st_mode & 0o777) == 0o777 & ~umask


def test_without_o_tmpfile_a_failed_write_leaves_the_previous_file_and_no_temp(tmp_path, monkeypatch):
    monkeypatch.delattr(os, "O_TMPFILE", raising=False)  # as on macOS: a named hidden temp file
    target = tmp_path / "table.md"
    pipeline.write_text(target, "previous\n")

    def fail_half_way(tmp):
        Path(tmp).write_text("part")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        checkpoint.atomic_write(target, fail_half_way)
    assert target.read_text() == "previous\n" and [p.name for p in tmp_path.iterdir()] == ["table.md"]
    old = os.umask(0o027)
    try:
        pipeline.write_text(target, "new\n")
    finally:
        os.umask(old)
    assert target.read_text() == "new\n" and (target.stat().st_mode & 0o777) == 0o640


# --- 6. faults during writes


def test_a_full_disk_leaves_the_previous_file_and_no_partial_one(tmp_path):
    disk = tmp_path / "small"
    disk.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a 64 KB tmpfs here (needs root): {r.stderr.strip()}")
    try:
        target = disk / "table.md"
        pipeline.write_text(target, "previous\n")
        with pytest.raises(checkpoint.OutputError) as e:  # one line naming the file, exit 2 from a stage
            pipeline.write_text(target, "x" * (1 << 20))
        assert str(e.value) == f"{target}: cannot be written (No space left on device); whatever it held before is unchanged"
        with pytest.raises(checkpoint.OutputError):
            checkpoint.torch_save(disk / "table.md", {"w": torch.zeros(1 << 18)})
        assert target.read_text() == "previous\n"
        assert [p.name for p in disk.iterdir()] == ["table.md"]
    finally:
        subprocess.run(["umount", str(disk)], check=True)


@pytest.mark.parametrize("blocker", ["read-only folder", "a file where the folder goes"])
def test_an_output_that_cannot_be_written_is_one_line_naming_the_file(tmp_path, blocker):
    """A stage that cannot write its output ends with one line and exit 2, naming the file, not a
    PermissionError about a temporary file. (Root writes into read-only folders: there only the
    second case provokes the refusal.)"""
    project = copy_project(tmp_path / "p")
    results = project / "results"
    if blocker == "read-only folder":
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        results.mkdir()
        results.chmod(0o555)
    else:
        results.write_text("not a folder")
    try:
        r = stage(project, "check_params")
    finally:
        if results.is_dir():
            results.chmod(0o755)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("error: results/params_check.txt: cannot be written ("), r.stderr


def test_an_output_folder_symlinked_out_of_the_project_is_refused(tmp_path, monkeypatch):
    """results/metrics as a symlink to a folder outside the project: writing a record there (as
    every stage does) is refused with one line naming the link and where it points; nothing lands
    outside. A deeper link (results/metrics/b0/evaluate) is named too; a link that stays inside the
    project, and a path given outside it on purpose, are written."""
    project, outside = tmp_path / "p", tmp_path / "elsewhere"
    (project / "results").mkdir(parents=True)
    outside.mkdir()
    monkeypatch.chdir(project)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    (project / "results" / "metrics").symlink_to(outside)
    with pytest.raises(checkpoint.OutputError) as e:
        pipeline.write_json("results/metrics/b0/evaluate/chip-r2.json", {"top1": 1.0})
    assert str(e.value) == (f"results/metrics/b0/evaluate/chip-r2.json: results/metrics is a symlink to {outside}, "
                            "outside the project; outputs stay inside it (replace the link with a folder)")
    with pytest.raises(checkpoint.OutputError):
        checkpoint.torch_save("results/metrics/model.pt", {"w": torch.zeros(2)})
    assert list(outside.rglob("*")) == []
    (project / "results" / "metrics").unlink()
    (project / "results" / "metrics" / "b0").mkdir(parents=True)
    (project / "results" / "metrics" / "b0" / "evaluate").symlink_to(outside)
    with pytest.raises(checkpoint.OutputError, match="^results/metrics/b0/evaluate/x.json: results/metrics/b0/evaluate is a symlink"):
        pipeline.write_text("results/metrics/b0/evaluate/x.json", "x")
    (project / "kept").mkdir()
    (project / "results" / "inside").symlink_to(project / "kept")
    pipeline.write_text("results/inside/a.txt", "a")
    pipeline.write_text(outside / "chosen.txt", "b")  # outside on purpose: the user's path, written
    assert (project / "kept" / "a.txt").read_text() == "a" and (outside / "chosen.txt").read_text() == "b"


def _write_blocked(kind: str, target: str, written, release) -> None:
    """Child process: start writing `target`, report half of it written, then wait to be killed."""
    method = "write_bytes" if kind == "checkpoint" else "write_text"
    real = getattr(Path, method)

    def half_then_block(self, content, *args, **kwargs):
        real(self, content[: len(content) // 2], *args, **kwargs)
        written.set()
        release.wait()  # never set: the parent kills this process here
        return real(self, content, *args, **kwargs)

    setattr(Path, method, half_then_block)
    if kind == "checkpoint":
        checkpoint.save(target, torch.nn.Linear(64, 64), "resnet20", {}, 1, 10)
    else:
        pipeline.write_text(target, "| new table |\n" * 1000)


@pytest.mark.parametrize("kind", ["checkpoint", "table"])
def test_a_process_killed_mid_write_leaves_the_previous_file_and_no_partial_one(tmp_path, kind):
    target = tmp_path / ("model.pt" if kind == "checkpoint" else "table.md")
    if kind == "checkpoint":
        checkpoint.save(target, torch.nn.Linear(2, 2), "resnet20", {}, 1, 10)
    else:
        pipeline.write_text(target, "| previous table |\n")
    previous = target.read_bytes()
    ctx = multiprocessing.get_context("fork")
    written, release = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_write_blocked, args=(kind, str(target), written, release))
    child.start()
    try:
        assert written.wait(120), "the child never reached the write"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.join()
    assert child.exitcode == -signal.SIGKILL
    assert target.read_bytes() == previous
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


# --- 8. smoke data verified


def smoke_params(root: Path, name: str) -> dict:
    return {"seed": 0, "data_seed": 0, "smoke": True, "paths": {"data": str(root)},
            "data": {"name": name, "image_size": data.FIXED_SIZES.get(name, 32), "test_fraction": 0.2,
                     "download": False, "train_subset": None}}


def test_a_corrupted_synthetic_cifar_batch_is_refused_before_it_is_unpickled(tmp_path, monkeypatch):
    params = smoke_params(tmp_path, "cifar10")
    assert pipeline.load_data(params).x_train.shape[1:] == (3, 32, 32)  # written, verified, loaded
    batch = tmp_path / synthetic.CIFAR10_FOLDER / "data_batch_1"
    raw = bytearray(batch.read_bytes())
    raw[-40] ^= 0xFF
    batch.write_bytes(bytes(raw))

    def no_unpickling(*args, **kwargs):
        raise AssertionError("a corrupted file was unpickled")

    monkeypatch.setattr(pickle, "load", no_unpickling)
    with pytest.raises(data.DatasetError) as e:
        pipeline.load_data(params)
    message = str(e.value)
    assert "\n" not in message and str(batch) in message and "md5" in message


def test_a_synthetic_folder_without_its_md5s_is_refused(tmp_path):
    folder = synthetic.write_mnist(tmp_path)
    (folder / synthetic.MANIFEST).unlink()
    with pytest.raises(data.DatasetError, match=synthetic.MANIFEST):
        pipeline.load_data(smoke_params(tmp_path, "mnist"))


# --- 7. a copied checkout's .venv


def _fake_checkout(folder: Path, synced_for: str) -> Path:
    """The Makefile, its inputs, a fake uv that logs its calls, and a .venv synced for `synced_for`."""
    (folder / ".tools" / "bin").mkdir(parents=True)
    shutil.copy(ROOT / "Makefile", folder / "Makefile")
    for name in ("pyproject.toml", "uv.lock"):
        (folder / name).write_text("")
    uv = folder / ".tools" / "bin" / "uv"
    uv.write_text('#!/bin/sh\necho "$@" >> uv.calls\nmkdir -p .venv\n')
    uv.chmod(0o755)
    (folder / ".venv").mkdir()
    (folder / ".venv" / "from-elsewhere").touch()
    (folder / ".venv" / ".synced").write_text(synced_for + "\n")
    return folder


@pytest.mark.skipif(shutil.which("make") is None, reason="no make here")
def test_make_rebuilds_a_venv_synced_for_another_folder(tmp_path):
    checkout = _fake_checkout(tmp_path / "copy", "/somewhere/else")
    r = subprocess.run(["make", "setup"], cwd=checkout, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "/somewhere/else" in r.stdout
    assert (checkout / "uv.calls").read_text().split() == ["sync", "--frozen", "--compile-bytecode"]
    assert not (checkout / ".venv" / "from-elsewhere").exists()
    assert (checkout / ".venv" / ".synced").read_text().strip() == str(checkout)
    r = subprocess.run(["make", "setup"], cwd=checkout, capture_output=True, text=True)  # now its own: kept
    assert r.returncode == 0 and len((checkout / "uv.calls").read_text().splitlines()) == 1, r.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="no make here")
def test_make_keeps_a_venv_synced_for_this_folder(tmp_path):
    checkout = _fake_checkout(tmp_path / "own", str(tmp_path / "own"))
    r = subprocess.run(["make", "setup"], cwd=checkout, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert not (checkout / "uv.calls").exists() and (checkout / ".venv" / "from-elsewhere").exists()


def test_a_paper_file_takes_at_most_its_row_and_network_caps():
    """paper/params.yaml's rows are capped at MAX_PAPER_ROWS (150) and rows x criteria at
    MAX_PAPER_NETWORKS (500): 150 rows of one criterion are accepted, 151 refused; 150 rows of
    four criteria (600 networks) refused, each naming `rows`."""
    paper = yaml.safe_load((ROOT / "paper" / "params.yaml").read_text())
    row = next(iter(paper["rows"].values()))

    def with_rows(n: int, criteria: list[str]) -> dict:
        edited = copy.deepcopy(paper)
        edited["criteria"] = criteria
        edited["rows"] = {f"row{i}": {k: v for k, v in row.items() if k != "criteria"} for i in range(n)}
        return edited

    config.validate_paper(with_rows(150, ["chip"]))
    with pytest.raises(config.ConfigError, match=r"^rows: 151 rows; at most 150"):
        config.validate_paper(with_rows(151, ["chip"]))
    with pytest.raises(config.ConfigError, match=r"^rows: 600 networks .*at most 500"):
        config.validate_paper(with_rows(150, ["chip", "hrank", "l1", "random"]))


def test_a_shapley_game_of_one_permutation_is_refused_naming_the_key():
    """snpfi.permutations come in antithetic pairs (a permutation and its reverse), so the
    fewest is 2: 2 is accepted and 1 refused at the params check, not minutes into the scores
    stage."""
    assert config.validate(params_with(**{"snpfi.permutations": 2}))
    with pytest.raises(config.ConfigError, match=r"^snpfi\.permutations: must be an integer in \[2, 1000\], got 1$"):
        config.validate(params_with(**{"snpfi.permutations": 1}))


def test_a_digits_hold_out_of_nothing_is_refused_naming_the_key():
    """data.test_fraction is the share of digits held out for testing, in (0, 1): 0 would leave
    no test images at all, so it is refused at the params check; 0.2 is accepted."""
    assert config.validate(params_with(**{"data.test_fraction": 0.2}))
    with pytest.raises(config.ConfigError, match=r"^data\.test_fraction: must be a number in \(0, 1\), got 0\.0$"):
        config.validate(params_with(**{"data.test_fraction": 0.0}))


@pytest.mark.parametrize("key", ["features.num_images", "snpfi.calibration_images"])
def test_digits_images_are_counted_after_the_rounded_up_hold_out(key):
    """digits' 1,797 images less a test_fraction of 0.2 held out, rounded up as the stratified
    split does (ceil(359.4) = 360, by hand), leave 1,437 training images: 1,437 feature or
    calibration images are accepted, 1,438 refused naming the key before any stage runs."""
    assert config.validate(params_with(**{key: 1437}))
    with pytest.raises(config.ConfigError, match=rf"^{key}: 1438 images, but digits's training split holds 1437"):
        config.validate(params_with(**{key: 1438}))


def test_a_train_subset_of_one_image_per_class_is_the_smallest_accepted():
    """data.train_subset takes at least one image of each class: digits has 10, so 10 is
    accepted (with at most 10 feature and calibration images, all the subset holds) and 9 is
    refused naming the key."""
    small = {"features.num_images": 10, "snpfi.calibration_images": 10}
    assert config.validate(params_with(**{"data.train_subset": 10}, **small))
    with pytest.raises(config.ConfigError, match=r"^data\.train_subset: digits has 10 classes"):
        config.validate(params_with(**{"data.train_subset": 9}, **small))

"""The docs are reference, so what they quote must be what the files say.

Every number the docs quote about a shipped configuration is read here from the file it
describes (named conditions, default rate ladders, golden sets, the Diff-SIT stream format,
the shipped models' configs; the models' ODFTE settings are checked in
tests/diffsit/test_diffsit_weights.py), every link in README/CHANGELOG/docs points at a file that
exists, every `bench` command and option is in docs/usage.md, and the README stays short.
A statement reworded so that a pattern here no longer finds it fails: check it by hand
against the file, then update the pattern."""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 200
DOCS = sorted([ROOT / "README.md", ROOT / "CHANGELOG.md", ROOT / "results" / "README.md", *(ROOT / "docs").rglob("*.md")])


def _text(doc: str) -> str:
    """``doc``'s text with whitespace folded, so a statement may wrap anywhere."""
    return " ".join((ROOT / doc).read_text(encoding="utf-8").split())


def _stated(doc: str, pattern: str) -> tuple[str, ...]:
    """The groups of the one statement ``pattern`` finds in ``doc``."""
    found = re.findall(pattern, _text(doc))
    assert len(found) == 1, f"{doc}: expected one statement matching {pattern!r}, found {len(found)}"
    return found[0] if isinstance(found[0], tuple) else (found[0],)


def _numbers(text: str) -> list[float]:
    return [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", text)]


def _json(path: str) -> dict:
    return json.loads((ROOT / path).read_text(encoding="utf-8"))


# --- the README -------------------------------------------------------------------------------


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; reference goes to docs/, measurements to docs/measurements/"


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    setup = re.search(r"```bash\n(python3 -m venv .*?--dataset sample.*?)\n```", readme)
    tests = re.search(r"```bash\n(python3 -m pip install .*?tox.*?)\n```", readme)
    assert setup and tests, "the two set-up commands are the README's first two bash blocks"
    assert readme.index(setup.group(1)) < readme.index(tests.group(1)) < readme.index("## Usage")
    assert tests.group(1) in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


# reference pages say what things do; dated measurements live in docs/measurements/, the
# history in CHANGELOG.md, and the reference pages link to them
REFERENCE = [
    "README.md",
    "docs/usage.md",
    "docs/codecs.md",
    "docs/metrics.md",
    "docs/diffsit.md",
    "docs/diffsit-bitstream.md",
    "docs/performance.md",
    "docs/clusters.md",
]
DATED = re.compile(r"\b20\d\d-\d\d-\d\d\b|(?<!-)\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b")


@pytest.mark.parametrize("doc", REFERENCE)
def test_reference_pages_hold_no_dated_measurements(doc):
    found = DATED.findall((ROOT / doc).read_text(encoding="utf-8"))
    assert not found, f"{doc} names dates or commits {found}: move the measurement to docs/measurements/, the history to CHANGELOG.md"


# --- links ------------------------------------------------------------------------------------

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# a path named in running text, as `docs/usage.md` or docs/clusters.md: from the checkout's root
NAMED = re.compile(r"(?<![\w/.-])((?:docs|results|benchmarks|tests|\.ci)/[\w./-]*\w)")


def _broken_links(doc: Path) -> list[str]:
    text = doc.read_text(encoding="utf-8")
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        if not (doc.parent / target.split("#")[0]).exists():
            broken.append(f"[...]({target})")
    for named in NAMED.findall(text):
        if "*" in named or "<" in named or "{" in named or named.startswith("results/<"):
            continue
        if not (ROOT / named).exists() and not (doc.parent / named).exists() and not _run_output(named):
            broken.append(named)
    return broken


def _run_output(path: str) -> bool:
    """Folders and files that runs write, named as examples: not in a checkout."""
    return path.startswith("results/") and not path.startswith(("results/golden", "results/published"))


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_points_at_a_file(doc):
    assert not _broken_links(doc), f"{doc.relative_to(ROOT)} links to files that do not exist: {_broken_links(doc)}"


def test_the_link_check_sees_a_broken_link(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("see [the usage](usage.md) and docs/nothing-here.md\n")
    assert _broken_links(doc) == ["[...](usage.md)", "docs/nothing-here.md"]


# --- docs/usage.md: every command and option --------------------------------------------------


def _bench_help(*argv: str) -> str:
    from bench.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main([*argv, "--help"])
    return out.getvalue()


def _bench_commands() -> list[str]:
    (choices,) = re.findall(r"\{([\w,-]+)\}", _bench_help())[:1]
    return choices.split(",")


def _options(help_text: str) -> set[str]:
    """The options a parser defines: the option lines of its help, not its prose."""
    return set(re.findall(r"^ {2}(?:-\w(?: \S+)?, )?(--[\w-]+)", help_text, flags=re.M)) - {"--help"}


def test_usage_lists_every_bench_command_and_option():
    usage = (ROOT / "docs" / "usage.md").read_text(encoding="utf-8")
    commands = _bench_commands()
    assert {"run", "report", "check"} <= set(commands)
    missing = [f"`{c}`" for c in commands if f"| `{c}` |" not in usage]
    for command in commands:
        missing += [f"{command} {opt}" for opt in sorted(_options(_bench_help(command))) if f"`{opt}" not in usage]
    assert not missing, f"docs/usage.md does not name: {', '.join(missing)}"


def test_diffsit_page_lists_every_diffsit_command():
    pytest.importorskip("diffusers")
    out = subprocess.run([sys.executable, "-m", "diffsit", "--help"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    (choices,) = re.findall(r"\{([\w,-]+)\}", out)[:1]
    page = (ROOT / "docs" / "diffsit.md").read_text(encoding="utf-8")
    assert [c for c in choices.split(",") if f"`{c}`" not in page] == []


def _code_imports() -> list[tuple[str, str]]:
    """Each first-party import in a ``python`` block of README or docs, with its page."""
    found = []
    for doc in DOCS:
        for block in re.findall(r"```python\n(.*?)```", doc.read_text(encoding="utf-8"), flags=re.S):
            lines = re.findall(r"^(?:from (?:bench|baselines|diffsit)\S* import .+|import (?:bench|baselines|diffsit)\S*)$", block, flags=re.M)
            found += [(str(doc.relative_to(ROOT)), line) for line in lines]
    return found


def test_code_in_the_docs_imports():
    imports = _code_imports()
    assert ("README.md", "from bench.config import SweepConfig") in imports
    for doc, line in imports:
        try:
            exec(line, {})
        except ImportError as e:
            pytest.fail(f"{doc}: {line!r} fails: {e}")


# --- named conditions, datasets, rate ladders -------------------------------------------------


def test_usage_names_every_condition():
    names = {c["name"] for c in _json("bench/conditions.json")["conditions"]}
    (first, others) = _stated("docs/usage.md", r"`--conditions ([\w-]+)` \(also ((?:`[\w-]+`(?:, )?)+)\)")
    assert {first, *re.findall(r"`([\w-]+)`", others)} == names


def test_dataset_defaults_are_quoted_from_the_registry():
    from bench.datasets import DATASETS

    standard, small = _stated("docs/usage.md", r"Standard sets default to their first (\d+) frames .{0,60}?`sample` and `synthetic` to (\d+)\.")
    sample = synthetic = small
    assert all(DATASETS[name].default_frames == int(standard) for name in ("hevc_b", "hevc_c", "hevc_d", "hevc_e", "uvg", "mcl_jcv"))
    assert DATASETS["sample"].default_frames == int(sample) and DATASETS["synthetic"].default_frames == int(synthetic)
    (readme,) = _stated("README.md", r"runs to the sample set's default (\d+) frames")
    assert int(readme) == DATASETS["sample"].default_frames


def _ladder_table() -> dict[str, list[float]]:
    text = (ROOT / "docs" / "codecs.md").read_text(encoding="utf-8")
    section = text.split("## Default rate ladders", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([\w-]+)` \| [^|]+ \| ([\d., ]+) \|$", section, flags=re.M)
    return {name: _numbers(ladder) for name, ladder in rows}


def _shipped_codecs() -> dict[str, str]:
    """The tree's codecs, as pyproject.toml declares them (not whatever else is installed)."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    section = text.split('[project.entry-points."bench.codecs"]', 1)[1].split("\n[", 1)[0]
    return dict(re.findall(r'^([\w-]+) = "([\w.]+:\w+)"', section, flags=re.M))


def test_codecs_page_quotes_every_default_ladder():
    table, shipped = _ladder_table(), _shipped_codecs()
    assert set(table) == set(shipped), "docs/codecs.md's ladder table and pyproject.toml's codecs differ"
    for name, target in shipped.items():
        module, cls = target.split(":")
        try:
            codec = getattr(importlib.import_module(module), cls)
        except ImportError as e:  # an optional extra that is not installed
            pytest.skip(f"{name}: {e}")
        assert [float(r) for r in codec.default_rates] == table[name], name


def test_diffsit_ladder_is_quoted_from_the_plugin():
    table = _ladder_table()
    (page,) = _stated("docs/diffsit.md", r"# the shipped tiny models, λ = ([\d., ]+\d)")
    assert _numbers(page) == table["diffsit"]
    shipped = sorted(float(p.name.removeprefix("tiny-lambda")) for p in (ROOT / "diffsit" / "weights").glob("tiny-lambda*"))
    (folders,) = _stated("docs/diffsit.md", r"`diffsit/weights/tiny-lambda\{([\d.,]+)\}`")
    assert sorted(_numbers(folders)) == shipped == sorted(table["diffsit"])


def test_diffsit_page_quotes_the_shipped_p_skip():
    configs = [json.loads(p.read_text()) for p in (ROOT / "diffsit" / "weights").glob("*/config.json")]
    _stated("docs/diffsit.md", r"`p_skip=true\|false` \(default: the model's `config.json`, where the shipped models say true")
    assert configs and all(c["p_skip"] is True for c in configs)


# --- golden sets ------------------------------------------------------------------------------


def test_usage_quotes_the_golden_configs():
    sample, diffsit = _json("results/golden/sample/config.json"), _json("results/golden/diffsit/config.json")
    frames, codecs, qps = _stated(
        "docs/usage.md", r"`results/golden/sample/` \(the three sample clips, (\d+) frames, (x265 and vvenc) at QP (\d+ and \d+), one encoder thread\)"
    )
    assert int(frames) == sample["frames"] and "sequences" not in sample  # all three clips
    assert [c.split(":")[0] for c in sample["codecs"]] == codecs.split(" and ")
    assert all("threads=1" in c for c in sample["codecs"])
    assert _numbers(qps) == sample["rates"]
    seqs, frames, lambdas = _stated("docs/usage.md", r"`results/golden/diffsit/` \((\w+ and \w+), (\d+) frames, Diff-SIT at λ ([\d., and]+\d)\)")
    assert seqs.split(" and ") == diffsit["sequences"] and int(frames) == diffsit["frames"]
    assert _numbers(lambdas) == diffsit["rates"] and diffsit["codecs"] == ["diffsit"]


def test_usage_quotes_the_golden_tolerances():
    psnr, msssim, rel, ewarp = _stated(
        "docs/usage.md", r"tolerances are ([\d.]+) dB on every PSNR, ([\de.-]+) on MS-SSIM and ([\d.]+) % on bpp and bytes \(Diff-SIT's also ([\d.]+) on Ewarp"
    )
    for name in ("sample", "diffsit"):
        tol = _json(f"results/golden/{name}/tolerances.json")
        assert all(tol[c] == {"abs": float(psnr)} for c in tol if c.startswith("psnr"))
        assert tol["ms_ssim_rgb"] == {"abs": float(msssim)}
        assert tol["bpp"] == tol["bytes"] == {"rel": float(rel) / 100}
    assert _json("results/golden/diffsit/tolerances.json")["ewarp"] == {"abs": float(ewarp)}
    assert "ewarp" not in _json("results/golden/sample/tolerances.json")


# --- the Diff-SIT stream format ---------------------------------------------------------------


def test_bitstream_page_quotes_the_format():
    pytest.importorskip("torch")
    from diffsit import bitstream

    (version,) = _stated("docs/diffsit-bitstream.md", r"\| version \| u16 \| format version: (\d+) \|")
    (title,) = _stated("docs/diffsit-bitstream.md", r"writes and a decoder reads \(`\.dsit`\), format version (\d+)\.")
    assert int(version) == int(title) == bitstream.FORMAT_VERSION
    (readable,) = _stated("docs/diffsit-bitstream.md", r"A decoder of version \d+ reads versions ([\d, and]+\d)\.")
    assert _numbers(readable) == list(bitstream.READABLE_VERSIONS)
    (changelog,) = _stated("CHANGELOG.md", r"A decoder of version \d+ reads versions ([\d, and]+\d);")
    assert _numbers(changelog) == list(bitstream.READABLE_VERSIONS)
    (magic,) = _stated("docs/diffsit-bitstream.md", r"\| magic \| 4 bytes \| `(\w+)` \|")
    assert magic.encode() == bitstream.MAGIC
    dim, dim2, frames = _stated(
        "docs/diffsit-bitstream.md", r"width and height 1 to (\d+) \(DCI 8K's width; the u16 fields would allow (\d+)×\d+.{0,40}?\), frames 1 to (\d+)"
    )
    assert int(dim) == bitstream.MAX_DIMENSION and int(dim2) == 2**16 - 1 and int(frames) == bitstream.MAX_FRAMES
    (sizes,) = _stated("docs/diffsit-bitstream.md", r"\| hash \| ([\d, or]+) bytes \|")
    assert _numbers(sizes) == sorted(size for _, size in bitstream.PICTURE_HASHES.values())
    (codes,) = _stated("docs/diffsit-bitstream.md", r"\| picture_hash \| u8 \| decoded-picture hash of every frame: ([^|]+) \|")
    assert codes == ", ".join(f"{code} {'CRC-32' if n == 'crc32' else n.upper() if n == 'md5' else n}" for n, (code, _) in bitstream.PICTURE_HASHES.items())
    versions = re.findall(r"^\| (\d+)(?: \(\w+\))? \| \d{4}-\d\d-\d\d \| \w+ \|", (ROOT / "CHANGELOG.md").read_text(encoding="utf-8"), flags=re.M)
    assert versions and int(versions[0]) == bitstream.FORMAT_VERSION, "CHANGELOG.md's newest bitstream version is not the code's"

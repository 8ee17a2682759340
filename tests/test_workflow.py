"""The Snakemake workflow: lint, dry runs (default, profiles, 200 tomograms), config validation,
resources reaching a (fake) scheduler, the failure policy, and the end-to-end example run."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = ("Snakefile", "workflow", "config", "envs", "profiles")
NAMES = ("TS_01", "TS_02", "TS_03")
STEPS = ("import", "fiducials", "align", "ice")


def copy_workflow(dest: Path) -> Path:
    """A project directory holding a copy of the workflow (tests never write into the repo)."""
    dest.mkdir(parents=True, exist_ok=True)
    for item in WORKFLOW_FILES:
        src = REPO / item
        if src.is_dir():
            shutil.copytree(src, dest / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / item)
    return dest


def snakemake(
    cwd: Path, *args: str, env: dict | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", *args]
    full_env = dict(os.environ)
    full_env.pop("SNAKEMAKE_PROFILE", None)
    full_env.update(env or {})
    return subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, env=full_env, timeout=timeout
    )


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run as {rule: count}."""
    m = re.search(r"Job stats:\n.*?\n-+\s+-+\n(.*?)\ntotal\s+(\d+)", output, re.S)
    assert m, output[-3000:]
    counts = {}
    for line in m.group(1).splitlines():
        rule, n = line.split()
        counts[rule] = int(n)
    return counts


def write_config(path: Path, overlay: dict) -> Path:
    path.write_text(yaml.safe_dump(overlay, sort_keys=False))
    return path


def expected_counts(n: int, source: str = "simulate", hand: bool = False) -> dict[str, int]:
    out = {
        source: 1,
        "imod_import": n,
        "fiducials": n,
        "align": n,
        "ice": n,
        "qc": n,
        "qc_summary": 1,
        "export_relion5": 1,  # export.relion5 is on in the example config
        "all": 1,
    }
    out.update({f"gather_{s}": 1 for s in STEPS})
    if hand:
        out.update({"hand": n, "gather_hand": 1})
    return out


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return copy_workflow(tmp_path / "project")


# --------------------------------------------------------------------------------------- static


def test_lint_is_clean(project: Path) -> None:
    r = snakemake(project, "--lint")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Congratulations, your workflow is in a good condition!" in r.stdout + r.stderr


def test_top_level_snakefile_includes_workflow() -> None:
    first = (REPO / "Snakefile").read_text().splitlines()[0]
    assert first == 'include: "workflow/Snakefile"'


def test_every_rule_has_log_threads_resources_conda() -> None:
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        text = smk.read_text()
        for block in re.split(r"\n(?=rule )", text)[1:]:
            rule = block.split(":")[0]
            for directive in ("log:", "threads:", "resources:", "conda:"):
                assert directive in block, f"{smk.name} {rule} lacks {directive}"


def test_conda_env_pins_match_pyproject() -> None:
    tomllib = pytest.importorskip("tomllib")

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((REPO / "envs" / "tiltflow.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert sorted(p for p in pip if "==" in p) == sorted(deps)
    assert "-e .." in pip


# --------------------------------------------------------------------------------------- dry runs


def test_dry_run_default_plans_expected_jobs(project: Path) -> None:
    r = snakemake(project, "-n")
    assert r.returncode == 0, r.stdout + r.stderr
    assert job_counts(r.stdout) == expected_counts(len(NAMES))


@pytest.mark.parametrize("profile", ["local", "slurm", "cluster-generic"])
def test_dry_run_with_profile(project: Path, profile: str) -> None:
    r = snakemake(project, "-n", "--profile", f"profiles/{profile}")
    assert r.returncode == 0, r.stdout + r.stderr
    assert job_counts(r.stdout) == expected_counts(len(NAMES))


def test_dry_run_slurm_gpu_rules_request_gpu(project: Path) -> None:
    overlay = {
        "device": "gpu",
        "resources": {"gpu": {"gpu": 1, "gpu_model": "h200", "slurm_partition": "gpuq"}},
    }
    cfg = write_config(project / "gpu.yaml", overlay)
    r = snakemake(project, "-n", "--profile", "profiles/slurm", "--configfile", str(cfg))
    assert r.returncode == 0, r.stdout + r.stderr
    for block in r.stdout.split("\nrule ")[1:]:
        rule = block.split(":")[0]
        res = re.search(r"resources: (.*)", block).group(1)
        if rule == "fiducials":
            assert "gpu=1" in res and "gpu_model=h200" in res, res
        else:
            assert "gpu=" not in res, (rule, res)


def test_dry_run_with_hand_step(project: Path) -> None:
    # hand.enabled adds the hand step after align, and ice reads its output
    cfg = write_config(project / "hand.yaml", {"hand": {"enabled": True}})
    r = snakemake(project, "-n", "--configfile", str(cfg))
    assert r.returncode == 0, r.stdout + r.stderr
    assert job_counts(r.stdout) == expected_counts(len(NAMES), hand=True)
    for block in r.stdout.split("\nrule ")[1:]:
        rule = block.split(":")[0]
        inputs = re.search(r"input: (.*)", block)
        if rule == "ice":
            assert inputs and "results/hand/" in inputs.group(1), block
            assert "results/align/" not in inputs.group(1), block
        if rule == "hand":
            assert inputs and "results/align/" in inputs.group(1), block
    assert "results/hand/tomograms.star" in r.stdout


def test_hand_step_off_keeps_align_to_ice(project: Path) -> None:
    r = snakemake(project, "-n")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "rule hand" not in r.stdout and "results/hand/" not in r.stdout
    for block in r.stdout.split("\nrule ")[1:]:
        if block.split(":")[0] == "ice":
            assert "results/align/" in re.search(r"input: (.*)", block).group(1)


def test_200_tomograms_dry_run_is_fast(project: Path) -> None:
    sheet = project / "sheet.tsv"
    lines = ["name\timod_dir\ttilt_series\tctfplotter"]
    lines += [
        f"T{i:03d}\timod/T{i:03d}\timod/T{i:03d}/T{i:03d}.st\timod/T{i:03d}/T{i:03d}.defocus"
        for i in range(200)
    ]
    sheet.write_text("\n".join(lines) + "\n")
    cfg = write_config(project / "big.yaml", {"tomograms": {"sheet": "sheet.tsv"}})
    t0 = time.perf_counter()
    r = snakemake(project, "-n", "--configfile", str(cfg))
    elapsed = time.perf_counter() - t0
    assert r.returncode == 0, r.stdout + r.stderr
    assert job_counts(r.stdout) == expected_counts(200, source="sheet")
    assert elapsed < 10.0, f"planning 200 tomograms took {elapsed:.1f} s"


def test_relion_import_star_sheet_names(project: Path) -> None:
    # without rlnTomoName the names are RELION 4's: the tilt-series path up to its last '.'
    star = project / "import.star"
    star.write_text(
        "data_\n\nloop_\n_rlnTomoImportImodDir #1\n_rlnTomoTiltSeriesName #2\n_rlnTomoImportCtfPlotterFile #3\n"
        "imod/a TS_a.st:mrc imod/a/a.defocus\nimod/b TS_b.mrc imod/b/b.defocus\n"
    )
    cfg = write_config(project / "star.yaml", {"tomograms": {"sheet": "import.star"}})
    r = snakemake(project, "results/import/tomograms.star", "-n", "--configfile", str(cfg))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "results/import/TS_a/tomograms.star" in r.stdout
    assert "results/import/TS_b/tomograms.star" in r.stdout
    assert "rule simulate" not in r.stdout


def test_default_name_with_directories_needs_a_name_column(project: Path) -> None:
    star = project / "import.star"
    star.write_text(
        "data_\n\nloop_\n_rlnTomoImportImodDir #1\n_rlnTomoTiltSeriesName #2\n_rlnTomoImportCtfPlotterFile #3\n"
        "imod/a imod/a/TS_a.st:mrc imod/a/a.defocus\n"
    )
    cfg = write_config(project / "star.yaml", {"tomograms": {"sheet": "import.star"}})
    r = snakemake(project, "-n", "--configfile", str(cfg))
    assert r.returncode != 0
    assert (
        "tomogram name 'imod/a/TS_a' (RELION's default from the tilt-series path) cannot be used as a "
        "workflow wildcard; add a rlnTomoName column"
    ) in r.stdout + r.stderr


# --------------------------------------------------------------------------------------- config errors


@pytest.mark.parametrize(
    "overlay, key",
    [
        ({"colour": "blue"}, "colour"),
        ({"resources": {"fiducials": {"memory": 100}}}, "memory"),
        ({"qc": {"max_resid": 2}}, "max_resid"),
        ({"tomograms": {"sheet": None, "shet": "x"}}, "shet"),
    ],
)
def test_unknown_config_key_is_named(project: Path, overlay: dict, key: str) -> None:
    cfg = write_config(project / "bad.yaml", overlay)
    r = snakemake(project, "-n", "--configfile", str(cfg))
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "Error validating config file" in out
    assert f"'{key}'" in out, out[-2000:]


def test_bad_device_value_is_rejected(project: Path) -> None:
    cfg = write_config(project / "bad.yaml", {"device": "tpu"})
    r = snakemake(project, "-n", "--configfile", str(cfg))
    assert r.returncode != 0
    assert "tpu" in r.stdout + r.stderr


# --------------------------------------------------------------------------------------- execution without the step libraries


def seed_failed_import(
    project: Path, names=NAMES, reason="InputError: imod/x.xf: file not found"
) -> None:
    """Outputs of simulate + import where import 'failed' for every tomogram: the later steps then
    run their scripts but only propagate the failure, so no step library is needed."""
    sim = project / "results" / "simulated" / "import.star"
    sim.parent.mkdir(parents=True)
    sim.write_text("data_\n\nloop_\n_rlnTomoName #1\n" + "".join(f"{n}\n" for n in names))
    time.sleep(0.05)
    for n in names:
        d = project / "results" / "import" / n
        d.mkdir(parents=True)
        (d / "tomograms.star").write_text(f"# version 30001\n# failed {n} at import: {reason}\n")
        (d / "provenance.json").write_text(
            json.dumps({"step": "import", "tomogram": n, "status": "failed", "reason": reason})
        )


def test_failed_tomograms_are_listed_not_fatal(project: Path) -> None:
    seed_failed_import(project)
    r = snakemake(project, "--cores", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    final = (project / "results" / "ice" / "tomograms.star").read_text()
    assert final.startswith("# version 30001\n")
    for n in NAMES:
        assert f"# missing {n}: import failed: InputError: imod/x.xf: file not found" in final
        prov = json.loads((project / "results" / "ice" / n / "provenance.json").read_text())
        assert prov["status"] == "failed" and prov["tiltflow_version"]
        assert (project / "results" / "qc" / f"{n}.png").stat().st_size > 1000
    summary = (project / "results" / "qc" / "summary.tsv").read_text().splitlines()
    assert summary[0].split("\t")[:3] == ["name", "status", "failed_step"]
    assert len(summary) == 1 + len(NAMES)
    assert all("\tfailed\timport\t" in row and "missing" in row for row in summary[1:])
    assert "imod/x.xf" in (project / "results" / "qc" / "summary.html").read_text()


def test_failure_passes_through_the_hand_step(project: Path) -> None:
    seed_failed_import(project, names=("TS_01",))
    cfg = write_config(
        project / "hand.yaml", {"hand": {"enabled": True}, "simulate": {"names": ["TS_01"]}}
    )
    r = snakemake(project, "--cores", "2", "--configfile", str(cfg))
    assert r.returncode == 0, r.stdout + r.stderr
    prov = json.loads((project / "results" / "hand" / "TS_01" / "provenance.json").read_text())
    assert prov["status"] == "failed" and prov["reason"].startswith("import failed:")
    final = (project / "results" / "ice" / "tomograms.star").read_text()
    assert "# missing TS_01: import failed: InputError: imod/x.xf: file not found" in final
    assert (
        "# missing TS_01: import failed"
        in (project / "results" / "hand" / "tomograms.star").read_text()
    )
    summary = (project / "results" / "qc" / "summary.tsv").read_text().splitlines()
    assert "\tfailed\timport\t" in summary[1]


def test_sheet_rule_converts_tsv(project: Path) -> None:
    # friendly columns, a RELION label (with and without '_') and tiltflow's mdoc column mixed
    (project / "sheet.tsv").write_text(
        "# comment\nname\t_rlnTomoImportImodDir\trlnTomoTiltSeriesName\tdose\tmdoc\n"
        "A\timod/A\timod/A/A.st\t3\timod/A/A.mdoc\n"
    )
    cfg = write_config(project / "tsv.yaml", {"tomograms": {"sheet": "sheet.tsv"}})
    r = snakemake(project, "results/sheet/import.star", "--cores", "1", "--configfile", str(cfg))
    assert r.returncode == 0, r.stdout + r.stderr
    from tiltflow.io.star import read_star

    block = next(iter(read_star(project / "results" / "sheet" / "import.star").values()))
    assert list(block.columns) == [
        "rlnTomoName",
        "rlnTomoImportImodDir",
        "rlnTomoTiltSeriesName",
        "rlnTomoImportFractionalDose",
        "tfMdocFile",
    ]
    assert block["rlnTomoName"].tolist() == ["A"]
    assert block["tfMdocFile"].tolist() == ["imod/A/A.mdoc"]


def test_unknown_tsv_column_stops_parsing(project: Path) -> None:
    (project / "sheet.tsv").write_text(
        "name\timod_dir\ttilt_series\tdefocus\nA\timod/A\timod/A/A.st\tx\n"
    )
    cfg = write_config(project / "tsv.yaml", {"tomograms": {"sheet": "sheet.tsv"}})
    r = snakemake(project, "-n", "--configfile", str(cfg))
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "cannot read the tomogram sheet" in out and "unknown column(s) 'defocus'" in out


FAKE_SBATCH = r"""#!/usr/bin/env bash
# fake sbatch: record the arguments (one JSON list per line), run the job script, print a job id
python3 - "$@" <<'PY' >> "$FAKE_SBATCH_LOG"
import json, sys
print(json.dumps(sys.argv[1:]))
PY
jobscript="${@: -1}"
bash "$jobscript" > /dev/null 2>&1 || true
echo "$RANDOM$RANDOM"
"""


def test_fake_sbatch_receives_resources(project: Path, tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    sbatch = bindir / "sbatch"
    sbatch.write_text(FAKE_SBATCH)
    sbatch.chmod(sbatch.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "sbatch.log"
    overlay = {
        "device": "gpu",
        "resources": {
            "default": {
                "threads": 1,
                "mem_mb": 1500,
                "runtime": 20,
                "slurm_partition": "cpuq",
                "slurm_account": "lab",
            },
            "gpu": {"gpu": 1, "gpu_model": "h200", "slurm_partition": "gpuq"},
            "fiducials": {"threads": 2, "mem_mb": 3000, "runtime": 45},
            "align": {"mem_mb": 2500},
        },
    }
    seed_failed_import(project, names=("TS_01",))
    sel = write_config(project / "cluster.yaml", {**overlay, "simulate": {"names": ["TS_01"]}})
    env = {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "FAKE_SBATCH_LOG": str(log)}
    r = snakemake(
        project,
        "--profile",
        "profiles/cluster-generic",
        "--configfile",
        str(sel),
        "--jobs",
        "1",
        "--latency-wait",
        "5",
        "--seconds-between-status-checks",
        "1",
        env=env,
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    by_rule = {}
    for args in calls:
        opts = dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)
        by_rule[opts["job-name"].removeprefix("tiltflow.")] = (opts, args)
    assert {"fiducials", "align", "ice", "gather_ice", "qc", "qc_summary"} <= set(by_rule), sorted(
        by_rule
    )
    fid, fid_args = by_rule["fiducials"]
    assert fid["cpus-per-task"] == "2" and fid["mem"] == "3000M" and fid["time"] == "45"
    assert fid["partition"] == "gpuq" and fid["account"] == "lab"
    assert fid["gres"] == "gpu:h200:1"
    align, _ = by_rule["align"]
    assert align["cpus-per-task"] == "1" and align["mem"] == "2500M" and align["time"] == "30"
    assert align["partition"] == "cpuq"
    for rule, (_opts, args) in by_rule.items():
        if rule != "fiducials":
            assert not any("gres" in a or "gpu" in a for a in args), (rule, args)
        assert "--parsable" in args
        assert args[-1].endswith(".sh") or "snakejob" in args[-1]
    assert (
        "# missing TS_01: import failed"
        in (project / "results" / "ice" / "tomograms.star").read_text()
    )


# --------------------------------------------------------------------------------------- end to end


@pytest.mark.slow
def run_killed_midway(project: Path) -> None:
    """Start the example, SIGKILL the whole Snakemake process group once the first fiducials
    fragment exists, then resume (unlock + --rerun-incomplete) to the end."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--cores", "2"],
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    marker = project / "results" / "fiducials" / NAMES[0] / "tomograms.star"
    deadline = time.monotonic() + 300
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (project / "results" / "ice" / "tomograms.star").exists()
    assert snakemake(project, "--unlock").returncode == 0
    r = snakemake(project, "--cores", "2", "--rerun-incomplete")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]


@pytest.mark.slow
def test_example_end_to_end_is_reproducible(tmp_path: Path) -> None:
    """Two runs of the example (the second killed mid-way and resumed) give identical STAR files."""
    runs = []
    for i in range(2):
        project = copy_workflow(tmp_path / f"run{i}")
        if i == 0:
            r = snakemake(project, "--cores", "2")
            assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
        else:
            run_killed_midway(project)
        final = (project / "results" / "ice" / "tomograms.star").read_text()
        assert "# missing" not in final, final[:2000]
        for n in NAMES:
            assert f"data_{n}" in final
        again = snakemake(project, "--cores", "2", "-n")
        assert again.returncode == 0
        assert "Nothing to be done" in again.stdout + again.stderr
        runs.append(project)
    stars = sorted(p.relative_to(runs[0]) for p in (runs[0] / "results").rglob("*.star"))
    assert stars
    for rel in stars:
        assert (runs[0] / rel).read_bytes() == (runs[1] / rel).read_bytes(), (
            f"{rel} differs between runs"
        )
    report = snakemake(runs[0], "--report", "report.html")
    assert report.returncode == 0, report.stderr[-3000:]
    assert (runs[0] / "report.html").stat().st_size > 10000

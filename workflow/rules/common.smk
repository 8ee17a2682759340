# Shared by all rule files — config and sheet validation, the tomogram names and the files each
# tomogram's jobs read and write (read from the sheet at parse time, so no checkpoints are
# needed), and the resource helpers that turn config["resources"] into each rule's threads /
# mem_mb / runtime / GPU request.
#
# The sheet is read with the tiltflow library (tiltflow.sheet and tiltflow.import_files, the
# same rules the importer follows), so tiltflow must be importable in the environment that runs
# Snakemake, also when the jobs run in their own conda environment (--sdm conda). README's
# install command, pip install -e '.[test]' -c constraints.txt, installs tiltflow and Snakemake
# together.

import math
import os
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from tiltflow.errors import TiltflowError
from tiltflow.import_files import ImportFiles, imod_files, import_files, sheet_rows
from tiltflow.provenance import run_summary
from tiltflow.sheet import is_star_sheet, read_sheet, sheet_names

validate(config, schema="../schemas/config.schema.yaml", set_default=True)


def _non_finite(node, path="config"):
    """Key paths of NaN/inf numbers in the config (JSON schema ranges let NaN through)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _non_finite(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _non_finite(value, f"{path}[{i}]")
    elif isinstance(node, float) and not math.isfinite(node):
        yield f"{path} = {node}"


def _check_step_params():
    """Every step's params built (and range-checked) by its Params class at parse time, so a
    bad value stops the run before any job starts (and before earlier results are touched).
    """
    bad = list(_non_finite(config))
    if bad:
        raise WorkflowError(f"config: not a finite number: {', '.join(bad)}")
    from tiltflow.align import AlignParams
    from tiltflow.fiducials import FiducialParams
    from tiltflow.hand.params import HandParams
    from tiltflow.ice import IceParams
    from tiltflow.importer import ImportOptions

    classes = {
        "import": ImportOptions,
        "fiducials": FiducialParams,
        "align": AlignParams,
        "ice": IceParams,
        "hand": HandParams,
    }
    for step, cls in classes.items():
        if step not in config:
            continue
        try:
            cls.from_dict(step_params(step))
        except TiltflowError as exc:
            raise WorkflowError(f"config {step}.params: {exc}") from None


# ---------------------------------------------------------------------------------------------
# steps, rules and their names

#: optional steps and whether the config runs them
OPTIONAL_STEPS = {"hand": bool(config["hand"]["enabled"])}

#: step -> directory under results/ (the gather rule of each writes results/<step>/tomograms.star),
#: in pipeline order; an optional step is in it only when enabled, so the step after it reads
#: its output (upstream_step)
STEPS = tuple(
    step
    for step in ("import", "fiducials", "align", "hand", "ice")
    if OPTIONAL_STEPS.get(step, True)
)

#: the steps with a figure of their own (rule step_figure draws it from the step's side file)
FIGURE_STEPS = tuple(step for step in ("align", "hand", "ice") if step in STEPS)

#: rule -> step whose resources it falls back to (before resources.default)
RULE_STEP = {
    "simulate": "simulate",
    "sheet": "sheet",
    "imod_import": "import",
    "fiducials": "fiducials",
    "align": "align",
    "hand": "hand",
    "ice": "ice",
    "gather_import": "gather",
    "gather_fiducials": "gather",
    "gather_align": "gather",
    "gather_hand": "gather",
    "gather_ice": "gather",
    "qc": "qc",
    "qc_summary": "qc",
    "step_figure": "qc",
    "export_relion5": "gather",
}

#: rules that run on the GPU when config["device"] is gpu or auto
GPU_RULES = ("fiducials",)

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")

SIMULATED = "results/simulated"


# ---------------------------------------------------------------------------------------------
# step parameters (passed whole to <Params>.from_dict, which rejects unknown keys)


def step_params(step):
    params = dict(config[step].get("params") or {})
    if step == "fiducials":
        params["device"] = config["device"]
    return params


_check_step_params()


def upstream_step(step):
    """The step whose per-tomogram output ``step`` reads: the previous one in STEPS (an optional
    step that is off is skipped; a step that is not in STEPS reads from align, where the
    optional steps attach)."""
    if step not in STEPS:
        return "align"
    return STEPS[STEPS.index(step) - 1]


# ---------------------------------------------------------------------------------------------
# the tomogram sheet


def check_wildcard_names(names):
    """Tomogram names become {name} wildcards (paths results/<step>/<name>/...), so they must
    match NAME_RE and be unique."""
    for name in names:
        if "/" in name:
            raise WorkflowError(
                f"tomogram name {name!r} (RELION's default from the tilt-series path) cannot be used as a "
                "workflow wildcard; add a rlnTomoName column (or a 'name' column in a TSV sheet)"
            )
        if not NAME_RE.match(name):
            raise WorkflowError(
                f"tomogram name {name!r} cannot be used as a workflow wildcard: names must match {NAME_RE.pattern}"
            )
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise WorkflowError(f"duplicate tomogram names in the sheet: {dup}")


def import_root():
    return str(step_params("import").get("root") or "")


def validate_sheet(sheet):
    """Each row of the sheet against workflow/schemas/sheet.schema.yaml (RELION labels, as
    tiltflow.sheet.read_sheet gives them for either sheet format)."""
    try:
        table = read_sheet(sheet)
    except (OSError, TiltflowError) as exc:
        raise WorkflowError(f"cannot read the tomogram sheet: {exc}")
    try:
        validate(
            table.to_frame(), schema="../schemas/sheet.schema.yaml", set_default=False
        )
    except WorkflowError as exc:
        raise WorkflowError(
            f"the tomogram sheet {sheet} does not match workflow/schemas/sheet.schema.yaml "
            f"(rows counted from 0): {exc}"
        )
    if "rlnTomoImportCulledFile" in table.columns:
        raise WorkflowError(
            f"the tomogram sheet {sheet} has a culled-file column (rlnTomoImportCulledFile / culled): "
            "the workflow writes every culled stack to results/import/<name>/culled/ so that it is "
            "tracked; remove the column (tiltflow import-imod honours it)"
        )


def workflow_tomograms():
    """Tomogram names, in sheet order, known at parse time (RELION 4 naming: tiltflow.sheet)."""
    sheet = config["tomograms"]["sheet"]
    if sheet is None:
        names = [str(n) for n in config["simulate"]["names"]]
    else:
        validate_sheet(sheet)
        try:
            names = sheet_names(sheet, root=import_root())
        except (OSError, TiltflowError) as exc:
            raise WorkflowError(f"cannot read the tomogram sheet: {exc}")
    check_wildcard_names(names)
    select = config["tomograms"].get("select") or []
    if select:
        unknown = [n for n in select if n not in names]
        if unknown:
            raise WorkflowError(
                f"tomograms.select names {unknown} that are not in the sheet"
            )
        names = [n for n in names if n in set(select)]
    return names


TOMOGRAMS = workflow_tomograms()

if not TOMOGRAMS:
    raise WorkflowError("the tomogram sheet lists no tomograms")


def import_star():
    """The sheet every per-tomogram import job reads: the simulated import STAR, or the user's
    sheet as it is (a RELION 4 import STAR or a TSV sheet: the importer reads both through
    tiltflow.sheet; rule sheet still writes results/sheet/import.star from a TSV, for RELION).
    """
    sheet = config["tomograms"]["sheet"]
    if sheet is None:
        return f"{SIMULATED}/import.star"
    return sheet


# ---------------------------------------------------------------------------------------------
# the files each tomogram's jobs read (known at parse time: every one is a declared input)

#: what rule simulate writes for each name (tiltflow.simulate.imod_files.write_imod_project)
SIMULATED_FILES = (
    "{name}.mrc",
    "{name}.xf",
    "{name}.tlt",
    "newst.com",
    "tilt.com",
    "{name}.defocus",
    "{name}_order_list.csv",
    "{name}.mrc.mdoc",
    "truth.json",
)


def simulated_outputs():
    """Every file of the simulated IMOD projects."""
    return [
        f"{SIMULATED}/{name}/{f.format(name=name)}"
        for name in config["simulate"]["names"]
        for f in SIMULATED_FILES
    ]


def simulated_import_files(name):
    """The import files of a simulated tilt series (written by rule simulate)."""
    d = Path(SIMULATED) / name
    sim = config["simulate"]["params"]
    opts = step_params("import")
    stack = d / f"{name}.mrc"
    imod, _ = imod_files(
        d,
        stack,
        opts.get("newst_com", "newst.com"),
        opts.get("tilt_com", "tilt.com"),
        bool(opts.get("x_axis_tilt", False)),
    )
    mdoc = sim.get("dose_profile", "equal") != "equal"
    return ImportFiles(
        name=name,
        stack=stack,
        imod=imod,
        ctf=d / f"{name}.defocus",
        acquisition=d / (f"{name}.mrc.mdoc" if mdoc else f"{name}_order_list.csv"),
        excluded_views=tuple(int(v) for v in sim.get("excluded_views") or ()),
    )


def workflow_import_files():
    sheet = config["tomograms"]["sheet"]
    if sheet is None:
        return {n: simulated_import_files(n) for n in TOMOGRAMS}
    opts = step_params("import")
    try:
        return import_files(
            sheet,
            root=import_root(),
            newst_com=opts.get("newst_com", "newst.com"),
            tilt_com=opts.get("tilt_com", "tilt.com"),
            order_list=opts.get("order_list"),
            x_axis_tilt=bool(opts.get("x_axis_tilt", False)),
            names=TOMOGRAMS,
        )
    except (OSError, TiltflowError) as exc:
        raise WorkflowError(f"cannot read the tomogram sheet: {exc}")


IMPORT_FILES = workflow_import_files()

#: each tomogram's sheet row ({label: text}), a parameter of its import job: editing one row of
#: the sheet re-runs that tomogram only (the sheet file itself is an ancient() input)
SHEET_ROWS = (
    {}
    if config["tomograms"]["sheet"] is None
    else sheet_rows(config["tomograms"]["sheet"], import_root())
)


def tracked(paths):
    """Inputs from the sheet: with a sheet, only the files that exist (a missing one makes that
    tomogram's import fail, which is recorded, instead of stopping the whole workflow; when it
    appears, the changed set of inputs re-runs the job); simulated files are all produced.
    """
    paths = [str(p) for p in paths]
    if config["tomograms"]["sheet"] is None:
        return paths
    return [p for p in paths if os.path.exists(p)]


def warn_missing_inputs():
    if config["tomograms"]["sheet"] is None:
        return
    missing = {
        n: [str(p) for p in f.reads if not os.path.exists(p)]
        for n, f in IMPORT_FILES.items()
    }
    missing = {n: m for n, m in missing.items() if m}
    if missing:
        shown = "; ".join(f"{n}: {', '.join(m)}" for n, m in list(missing.items())[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        print(
            f"tiltflow: {len(missing)} tomogram(s) name input files that do not exist ({shown}{more}); "
            "their import will fail and be recorded",
            file=sys.stderr,
        )


warn_missing_inputs()


def culled_dir(name):
    """Where the import writes the culled stack of a tomogram with excluded views."""
    return f"results/import/{name}/culled"


def tilt_series_input(name):
    """The stack the later steps of a tomogram read: the import's culled stack (its directory)
    when tilt.com excludes views, else the raw stack."""
    files = IMPORT_FILES[name]
    if files.excluded_views:
        return [culled_dir(name)]
    return tracked([files.stack])


def import_reads(wildcards):
    return tracked(IMPORT_FILES[wildcards.name].reads)


def sheet_input():
    """The sheet; a user's sheet is ancient(): each import job has its own row as a parameter
    instead, so editing one row re-runs one tomogram. (Snakemake skips the parameter check of a
    job whose ancient() input is made by a job that runs, so the import reads the user's file,
    not rule sheet's STAR.)"""
    if config["tomograms"]["sheet"] is None:
        return import_star()
    return ancient(import_star())


def sheet_row(wildcards):
    return SHEET_ROWS.get(wildcards.name, {})


def fiducials_reads(wildcards):
    """The stack (and the import's culled-stack folder), and with fiducials source imod the IMOD model, .prexg and the tilt.com next to
    the model (tiltflow.fiducials.step.fiducials_from_imod)."""
    name = wildcards.name
    # the culled-stack folder always (empty when nothing is culled), so that deleting it re-runs
    # the import like any other output
    files = [culled_dir(name), *tilt_series_input(name)]
    files = list(dict.fromkeys(files))
    params = step_params("fiducials")
    if params.get("source") == "imod":
        imod = []
        fid = str(params.get("imod_fid") or "").replace("{name}", name)
        if fid:
            imod.append(fid)
            if params.get("imod_excluded_views") is None:
                imod.append(str(Path(fid).parent / "tilt.com"))
        prexg = str(params.get("imod_prexg") or "").replace("{name}", name)
        if prexg:
            imod.append(prexg)
        files += [p for p in imod if os.path.exists(p)]
    return files


# ---------------------------------------------------------------------------------------------
# resources


def _resource_layers(rule):
    res = config["resources"]
    layers = [res.get("default") or {}]
    step = RULE_STEP.get(rule)
    if step and step != rule:
        layers.append(res.get(step) or {})
    layers.append(res.get(rule) or {})
    return layers


def uses_gpu(rule):
    return rule in GPU_RULES and config["device"] in ("gpu", "auto")


def rule_threads(rule):
    threads = 1
    for layer in _resource_layers(rule):
        threads = layer.get("threads", threads)
    return int(threads)


def _scaled_by_attempt(base):
    """base × attempt: a job retried (profile `retries`) after SLURM killed it for memory or
    time asks for twice as much, then three times, ..."""

    def scaled(wildcards, attempt):
        return int(base) * int(attempt)

    return scaled


#: resources that grow with the attempt
SCALED_RESOURCES = ("mem_mb", "runtime")


def rule_resources(rule):
    """mem_mb, runtime (minutes) and scheduler keys of a rule: resources.default, then the
    step's entry, then the rule's own entry; mem_mb and runtime are multiplied by the attempt;
    GPU rules add resources.gpu (gpu, gpu_model, slurm_partition) when device is gpu or auto.
    """
    out = {}
    for layer in _resource_layers(rule):
        out.update({k: v for k, v in layer.items() if k != "threads" and v is not None})
    for key in SCALED_RESOURCES:
        if key in out:
            out[key] = _scaled_by_attempt(out[key])
    if uses_gpu(rule):
        gpu = config["resources"].get("gpu") or {}
        out["gpu"] = int(gpu.get("gpu", 1))
        for key in ("gpu_model", "slurm_partition"):
            if gpu.get(key):
                out[key] = gpu[key]
    return out


def rule_log(rule, name=None):
    return f"logs/{rule}/{name}.log" if name else f"logs/{rule}.log"


def rule_benchmark(rule, name=None):
    return f"benchmarks/out/{rule}/{name}.tsv" if name else f"benchmarks/out/{rule}.tsv"


# ---------------------------------------------------------------------------------------------
# targets


def step_fragment(step, name):
    return f"results/{step}/{name}/tomograms.star"


def step_provenance(step, name):
    return f"results/{step}/{name}/provenance.json"


#: every output of the per-tomogram jobs: all are targets, so that deleting any of them (a side
#: file too, whose consumers are up to date) re-creates it; the <step>_{name}.png figures are
#: rule step_figure's (drawn from the side file next to them)
TOMOGRAM_OUTPUTS = (
    "results/import/{name}/tomograms.star",
    "results/import/{name}/provenance.json",
    "results/import/{name}/culled",
    "results/fiducials/{name}/tomograms.star",
    "results/fiducials/{name}/provenance.json",
    "results/fiducials/{name}/fiducials_{name}.star",
    "results/fiducials/{name}/tracks_{name}.star",
    "results/align/{name}/tomograms.star",
    "results/align/{name}/provenance.json",
    "results/align/{name}/fiducials_{name}.star",
    "results/align/{name}/tracks_{name}.star",
    "results/align/{name}/align_{name}.star",
    "results/align/{name}/align_{name}.png",
    "results/ice/{name}/tomograms.star",
    "results/ice/{name}/provenance.json",
    "results/ice/{name}/ice_{name}.star",
    "results/ice/{name}/ice_{name}.png",
) + (
    (
        "results/hand/{name}/tomograms.star",
        "results/hand/{name}/provenance.json",
        "results/hand/{name}/hand_{name}.star",
        "results/hand/{name}/hand_{name}.png",
    )
    if OPTIONAL_STEPS["hand"]
    else ()
)


def final_targets():
    targets = [f"results/{step}/tomograms.star" for step in STEPS]
    targets += expand(TOMOGRAM_OUTPUTS, name=TOMOGRAMS)
    sheet = config["tomograms"]["sheet"]
    if sheet is None:
        targets += [f"{SIMULATED}/import.star", f"{SIMULATED}/provenance.json"]
        targets += simulated_outputs()
    elif not is_star_sheet(sheet):
        targets.append("results/sheet/import.star")
    if config["qc"]["enabled"]:
        targets += ["results/qc/summary.tsv", "results/qc/summary.html"]
        targets += expand("results/qc/{name}.png", name=TOMOGRAMS)
        targets += expand("results/qc/{name}.json", name=TOMOGRAMS)
    if config["export"]["relion5"]:
        targets.append("results/relion5")
    return targets


# ---------------------------------------------------------------------------------------------
# what a run did (onsuccess / onerror in workflow/Snakefile)


def print_run_summary(error=False):
    print(
        run_summary(
            TOMOGRAMS,
            steps=STEPS,
            qc_html="results/qc/summary.html" if config["qc"]["enabled"] else None,
            relion5=(
                "results/relion5/tomograms.star"
                if config["export"]["relion5"]
                else None
            ),
            error=error,
        ),
        file=sys.stderr,
    )

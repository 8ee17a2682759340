# Shared by all rule files — config validation, the tomogram sheet (read at parse time, so no
# checkpoints are needed) and the resource helpers that turn config["resources"] into each
# rule's threads / mem_mb / runtime / GPU request.
#
# Only the standard library, PyYAML and Snakemake are used here: the workflow must parse in the
# environment that runs Snakemake even when the jobs run in their own conda environment.

import csv
import re
import shlex
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate


validate(config, schema="../schemas/config.schema.yaml", set_default=True)


# ---------------------------------------------------------------------------------------------
# steps, rules and their names

#: step -> directory under results/ (the gather rule of each writes results/<step>/tomograms.star)
STEPS = ("import", "fiducials", "align", "ice")

#: rule -> step whose resources it falls back to (before resources.default)
RULE_STEP = {
    "simulate": "simulate",
    "sheet": "sheet",
    "imod_import": "import",
    "fiducials": "fiducials",
    "align": "align",
    "ice": "ice",
    "gather_import": "gather",
    "gather_fiducials": "gather",
    "gather_align": "gather",
    "gather_ice": "gather",
    "qc": "qc",
    "qc_summary": "qc",
}

#: rules that run on the GPU when config["device"] is gpu or auto
GPU_RULES = ("fiducials",)

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


# ---------------------------------------------------------------------------------------------
# the tomogram sheet


def _star_first_loop(path):
    """Labels and rows of the first loop of a STAR file (enough for a RELION import STAR)."""
    labels, rows, in_loop = [], [], False
    with open(path, encoding="utf-8") as fh:
        for raw in fh:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("data_"):
                if rows or labels:
                    break
                continue
            if line == "loop_":
                in_loop = True
                continue
            if line.startswith("_"):
                if rows:
                    break  # a second loop
                labels.append(line.split()[0][1:])
                continue
            if in_loop:
                rows.append(shlex.split(line))
    if not labels:
        raise ValueError(f"{path}: no loop_ found (expected a RELION 4 import STAR)")
    for i, row in enumerate(rows):
        if len(row) != len(labels):
            raise ValueError(f"{path}: row {i + 1} has {len(row)} values for {len(labels)} labels")
    return labels, rows


def tomo_name_from_tilt_series(tilt_series):
    """RELION 4's name for a tilt series without rlnTomoName: the file name without its extension
    (and without a ``:mrc`` type suffix)."""
    base = Path(str(tilt_series).split(":")[0]).name
    return base.rsplit(".", 1)[0] if "." in base else base


#: TSV sheet column -> RELION 4 import STAR label
TSV_COLUMNS = {
    "name": "rlnTomoName",
    "imod_dir": "rlnTomoImportImodDir",
    "tilt_series": "rlnTomoTiltSeriesName",
    "ctfplotter": "rlnTomoImportCtfPlotterFile",
    "ctffind": "rlnTomoImportCtfFindFile",
    "dose": "rlnTomoImportFractionalDose",
    "order_list": "rlnTomoImportOrderList",
    "optics_group": "rlnOpticsGroupName",
    "offset_x": "rlnTomoImportOffsetX",
    "offset_y": "rlnTomoImportOffsetY",
    "offset_z": "rlnTomoImportOffsetZ",
    "culled": "rlnTomoImportCulledFile",
}


def read_tsv_sheet(path):
    """Rows (dicts keyed by TSV column) of a tab-separated tomogram sheet with a header line."""
    with open(path, encoding="utf-8", newline="") as fh:
        lines = [ln for ln in fh if ln.strip() and not ln.lstrip().startswith("#")]
    reader = csv.DictReader(lines, delimiter="\t")
    cols = reader.fieldnames or []
    unknown = [c for c in cols if c not in TSV_COLUMNS]
    if unknown:
        raise ValueError(f"{path}: unknown column(s) {', '.join(unknown)}; known: {', '.join(TSV_COLUMNS)}")
    for need in ("imod_dir", "tilt_series"):
        if need not in cols:
            raise ValueError(f"{path}: missing column {need!r}")
    rows = list(reader)
    for row in rows:
        if not row.get("name"):
            row["name"] = tomo_name_from_tilt_series(row["tilt_series"])
    return rows


def sheet_names():
    """Tomogram names, in sheet order, known at parse time."""
    sheet = config["tomograms"]["sheet"]
    if sheet is None:
        names = list(config["simulate"]["names"])
    elif str(sheet).endswith(".star"):
        labels, rows = _star_first_loop(sheet)
        if "rlnTomoName" in labels:
            names = [r[labels.index("rlnTomoName")] for r in rows]
        elif "rlnTomoTiltSeriesName" in labels:
            names = [tomo_name_from_tilt_series(r[labels.index("rlnTomoTiltSeriesName")]) for r in rows]
        else:
            raise ValueError(f"{sheet}: needs _rlnTomoName or _rlnTomoTiltSeriesName")
    else:
        names = [r["name"] for r in read_tsv_sheet(sheet)]
    bad = [n for n in names if not NAME_RE.match(n)]
    if bad:
        raise ValueError(f"tomogram names must match {NAME_RE.pattern}: {bad}")
    dup = sorted({n for n in names if names.count(n) > 1}) if len(set(names)) != len(names) else []
    if dup:
        raise ValueError(f"duplicate tomogram names in the sheet: {dup}")
    select = config["tomograms"].get("select") or []
    if select:
        unknown = [n for n in select if n not in names]
        if unknown:
            raise ValueError(f"tomograms.select names {unknown} that are not in the sheet")
        names = [n for n in names if n in set(select)]
    return names


try:
    TOMOGRAMS = sheet_names()
except (OSError, ValueError) as exc:
    raise WorkflowError(f"cannot read the tomogram sheet: {exc}")

if not TOMOGRAMS:
    raise WorkflowError("the tomogram sheet lists no tomograms")


def import_star():
    """The RELION 4 import STAR every per-tomogram import job reads."""
    sheet = config["tomograms"]["sheet"]
    if sheet is None:
        return "results/simulated/import.star"
    if str(sheet).endswith(".star"):
        return sheet
    return "results/sheet/import.star"


# ---------------------------------------------------------------------------------------------
# step parameters (passed whole to <Params>.from_dict, which rejects unknown keys)


def step_params(step):
    params = dict(config[step].get("params") or {})
    if step == "fiducials":
        params["device"] = config["device"]
    return params


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


def rule_resources(rule):
    """mem_mb, runtime (minutes) and scheduler keys of a rule: resources.default, then the
    step's entry, then the rule's own entry; GPU rules add resources.gpu (gpu, gpu_model,
    slurm_partition) when device is gpu or auto."""
    out = {}
    for layer in _resource_layers(rule):
        out.update({k: v for k, v in layer.items() if k != "threads" and v is not None})
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


def final_targets():
    targets = [f"results/{step}/tomograms.star" for step in STEPS]
    if config["qc"]["enabled"]:
        targets += ["results/qc/summary.tsv", "results/qc/summary.html"]
        targets += expand("results/qc/{name}.png", name=TOMOGRAMS)
    return targets

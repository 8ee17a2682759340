# Shared by all rule files — config validation, the tomogram names (read from the sheet at parse
# time, so no checkpoints are needed) and the resource helpers that turn config["resources"] into
# each rule's threads / mem_mb / runtime / GPU request.
#
# The sheet is read with the tiltflow library (tiltflow.sheet, the same code the importer uses),
# so tiltflow must be importable in the environment that runs Snakemake, also when the jobs run
# in their own conda environment (--sdm conda). README's install command, pip install -e '.[test]',
# installs tiltflow and Snakemake together.

import re

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from tiltflow.errors import TiltflowError
from tiltflow.sheet import is_star_sheet, sheet_names


validate(config, schema="../schemas/config.schema.yaml", set_default=True)


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
    "export_relion5": "gather",
}

#: rules that run on the GPU when config["device"] is gpu or auto
GPU_RULES = ("fiducials",)

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


# ---------------------------------------------------------------------------------------------
# step parameters (passed whole to <Params>.from_dict, which rejects unknown keys)


def step_params(step):
    params = dict(config[step].get("params") or {})
    if step == "fiducials":
        params["device"] = config["device"]
    return params


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
            raise WorkflowError(f"tomogram name {name!r} cannot be used as a workflow wildcard: names must match {NAME_RE.pattern}")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise WorkflowError(f"duplicate tomogram names in the sheet: {dup}")


def workflow_tomograms():
    """Tomogram names, in sheet order, known at parse time (RELION 4 naming: tiltflow.sheet)."""
    sheet = config["tomograms"]["sheet"]
    if sheet is None:
        names = [str(n) for n in config["simulate"]["names"]]
    else:
        try:
            names = sheet_names(sheet, root=str(step_params("import").get("root") or ""))
        except (OSError, TiltflowError) as exc:
            raise WorkflowError(f"cannot read the tomogram sheet: {exc}")
    check_wildcard_names(names)
    select = config["tomograms"].get("select") or []
    if select:
        unknown = [n for n in select if n not in names]
        if unknown:
            raise WorkflowError(f"tomograms.select names {unknown} that are not in the sheet")
        names = [n for n in names if n in set(select)]
    return names


TOMOGRAMS = workflow_tomograms()

if not TOMOGRAMS:
    raise WorkflowError("the tomogram sheet lists no tomograms")


def import_star():
    """The RELION 4 import STAR every per-tomogram import job reads."""
    sheet = config["tomograms"]["sheet"]
    if sheet is None:
        return "results/simulated/import.star"
    if is_star_sheet(sheet):
        return sheet
    return "results/sheet/import.star"


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
    if config["export"]["relion5"]:
        targets.append("results/relion5")
    return targets

"""The workflow's JSON schema and the step Params dataclasses describe the same keys."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import jsonschema
import pytest
import yaml

from tiltflow.align.params import AlignParams
from tiltflow.errors import ConfigError
from tiltflow.fiducials.step import FiducialParams
from tiltflow.hand.params import HandParams
from tiltflow.ice.params import IceParams
from tiltflow.importer import ImportOptions
from tiltflow.simulate import SimulationParams

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
CONFIG = yaml.safe_load((ROOT / "config/config.yaml").read_text())
STEPS = {
    "simulate": SimulationParams,
    "import": ImportOptions,
    "fiducials": FiducialParams,
    "align": AlignParams,
    "hand": HandParams,
    "ice": IceParams,
}


@pytest.mark.parametrize("step", sorted(STEPS))
def test_schema_params_are_the_dataclass_fields(step):
    params = SCHEMA["properties"][step]["properties"]["params"]
    assert params["additionalProperties"] is False
    assert set(params["properties"]) == {f.name for f in dataclasses.fields(STEPS[step])}


@pytest.mark.parametrize("step", sorted(STEPS))
def test_default_config_params_build(step):
    STEPS[step].from_dict(CONFIG[step]["params"])


def test_default_config_is_valid():
    jsonschema.validate(CONFIG, SCHEMA)


@pytest.mark.parametrize("step", sorted(STEPS))
def test_unknown_step_key_is_named(step):
    bad = copy.deepcopy(CONFIG)
    bad[step]["params"]["no_such_key"] = 1
    with pytest.raises(jsonschema.ValidationError, match="no_such_key"):
        jsonschema.validate(bad, SCHEMA)
    with pytest.raises(ConfigError, match="no_such_key"):
        STEPS[step].from_dict(bad[step]["params"])


def test_device_is_set_at_top_level_only():
    bad = copy.deepcopy(CONFIG)
    bad["fiducials"]["params"]["device"] = "gpu"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, SCHEMA)

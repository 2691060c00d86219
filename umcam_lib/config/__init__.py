"""The study's parameters: YAML files with inheritance and overrides (:mod:`.files`), the typed
schema of frozen sections (:mod:`.schema`), and the notebooks' parameter loading (:mod:`.notebook`).
"""
from .files import (deep_merge, profile_path, load_params, parse_override, set_key, apply_overrides, flatten,
                    fingerprint)
from .schema import (ParameterError, param, AUGMENT_DEFAULTS, Section, DataParams, ClassifierParams,
                     CamParams, GseParams, SegParams, BaselinesParams, ExecutorParams, StudyParams, schema_defaults,
                     schema_keys, unknown_keys, validate_params, SECTIONS, choices, default, section_name,
                     trained_keys, check_choice, check_section)

__all__ = ["deep_merge", "profile_path", "load_params", "parse_override", "set_key", "apply_overrides", "flatten",
           "fingerprint", "ParameterError", "param", "AUGMENT_DEFAULTS", "Section", "DataParams",
           "ClassifierParams", "CamParams", "GseParams", "SegParams", "BaselinesParams", "ExecutorParams", "StudyParams",
           "schema_defaults", "schema_keys", "unknown_keys", "validate_params", "SECTIONS", "choices",
           "default", "section_name", "trained_keys", "check_choice", "check_section"]

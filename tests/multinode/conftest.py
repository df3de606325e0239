"""No network in these tests either: the Hugging Face revision API is faked as in tests/unit."""

from components.providers import engine_build as _engine_build
from tests import hf_api as _hf_api

_hf_api.install(_engine_build)

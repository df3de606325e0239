"""Where stacks deployed before the package layout pickled the TrtllmEngine provider.

See components/model_store.py: the old state names `components.engine_build.TrtllmEngineProvider`.
"""

from components.providers.engine_build import TrtllmEngineProvider

__all__ = ["TrtllmEngineProvider"]

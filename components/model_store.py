"""Where stacks deployed before the package layout pickled the ModelRepository provider.

Pulumi stores a dynamic resource's provider by reference (`components.model_store.
ModelRepositoryProvider`) and unpickles the old state's copy for delete and refresh, so the
name must keep resolving until every stack has run `pulumi up` once (which rewrites the state
with `components.providers.model_repository`). tests/unit/test_urn_aliases.py loads those pickles.
"""

from components.providers.model_repository import ModelRepositoryProvider

__all__ = ["ModelRepositoryProvider"]

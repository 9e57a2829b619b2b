"""Train: recipes (plain settings) and the loop that runs one.

`nertune.train(...)` is also the Python entry point. Importing any
`nertune.train.*` submodule makes Python bind the attribute `nertune.train` to
this package, which would shadow the function; so the package itself is made
callable and forwards to nertune.api.train.
"""

import sys
import types


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        from nertune.api import train

        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

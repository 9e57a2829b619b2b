"""Training: the recipe (one typed schema), its setup, the step, the loop, checkpoints, run files.

`nertune.train(...)` (training/api.py) is the Python entry point; `speed/` holds the optional speed tricks.
"""

"""Optional speed tricks for training, each off by a recipe flag and each with an equivalence test.

graphs / graphed_step: CUDA graphs of a step; embedding_grad / embedding_rows: a cheaper embedding
backward; dropout: a cheaper dropout mask on CPUs.
"""

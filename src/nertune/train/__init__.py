"""Train: recipes (plain settings) and the loop that runs one."""

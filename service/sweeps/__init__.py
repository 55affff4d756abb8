"""Sweeps: what an experiment tries and what it concludes. Its search space validated (space,
grid), configurations drawn (sampling) and added as runs (trials), known results reused
(reuse), hopeless runs pruned (pruning), results summarised (statistics) and aggregated into
the experiment's and the model's best (aggregate); and the commands that create, start,
cancel and retry experiments (experiments), and delete them keeping what other experiments
need (removal)."""

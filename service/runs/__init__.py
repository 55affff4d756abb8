"""A run's life: the one function that changes its state (state), a worker's claim, result and
requeue (attempts), and the learning curve it prints as it trains (curves)."""

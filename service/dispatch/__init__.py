"""Getting runs to the workers: the broker's queues and messages (broker), publishing and the
reconciler that finishes what a crash or an outage interrupted (publish), dead letters taken
back (redelivery), and the broker's health as /health reports it (probe)."""

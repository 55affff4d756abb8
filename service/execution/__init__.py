"""Running a script: its argv, environment and time limit (training), its process group
supervised and killed as a whole (supervise), and the metric read from what it printed
(parsing)."""

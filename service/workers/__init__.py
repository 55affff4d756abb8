"""Workers: the registry of worker processes as they report themselves (registry), and what
the API does for remote workers' routes (remote): claims, results, folders and images."""

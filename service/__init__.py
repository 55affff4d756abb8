"""sweeplab: a hyperparameter-sweep service (aiohttp API, Dramatiq workers, Peewee storage)."""

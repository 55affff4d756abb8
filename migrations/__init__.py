"""Schema migrations, applied in file-name order by `python -m service.migrate`.

Each module defines `upgrade(db)`. A migration is frozen once it has landed: it declares the
tables as they were at that point, never importing today's models, so that it produces the same
schema forever.
"""

"""The core layer: settings, errors, storage, bucket layout, processes, logging.

Imports nothing else of spx; every other layer may import it."""

"""KServe canary rollout: ``deploy`` (create or canary a new champion) and ``promote`` (promote or roll back)."""

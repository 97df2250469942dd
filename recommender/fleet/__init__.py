"""The fleet on Ray: shards of (cluster, namespace) spread over actors."""

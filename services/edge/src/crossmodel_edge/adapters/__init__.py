"""Everything that does I/O: gRPC clients, the catalog cache, the usage event producer."""

"""Shared plumbing for every CrossModel service: settings, logging, telemetry, gRPC, Kafka, money."""

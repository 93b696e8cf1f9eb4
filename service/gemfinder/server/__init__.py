"""The gRPC server: ModelSearchService handlers, interceptors, error table, wiring."""

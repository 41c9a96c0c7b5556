"""Python client side of tistudio: the `tistudio` CLI, health checks, and a local trio of services."""

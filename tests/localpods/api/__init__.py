"""A local stand-in for the Kubernetes API server, served by the local pod runtime over HTTPS."""

"""The local pod runtime: runs the pods of the workloads in its object store as local processes (see README)."""

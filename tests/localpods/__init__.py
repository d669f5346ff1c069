"""The local pod runtime: runs the rendered StatefulSet's pods as local processes (see README)."""

"""Kubernetes glue: rendering the overlays of ``k8s/`` for one study, and the pods' wait-for-store tool."""

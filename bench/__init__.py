"""The benchmarks: ``python -m bench`` runs the sections of ``bench.sections`` (``bench.section`` says what a
section is); ``bench/device_check.sh`` is the GPU check."""

"""The image side: Dockerfiles, layers, the build's inputs, plan and bake, and its report (build.py)."""

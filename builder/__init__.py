"""Builder: recipe + repository → lock → Dockerfile → image → registry → recorded version.

Also builds the base desktop images from ``recipes/base``.
"""

"""The commands a person or a scheduler runs (the `watchnext` console script): the stages one
at a time or all of them, tune, ablate and nightly. They sit above every stage package."""

"""`retarget sweep`: many compile (or predict) jobs from one spec, on a local process pool or a Ray cluster,
resumable, merged into one table (retarget.sweep.run.sweep). See docs/sweep.md."""

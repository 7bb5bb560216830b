//! quest-build library: manifest, plan, build, image, run.

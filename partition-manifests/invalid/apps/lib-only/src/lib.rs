//! Nothing to run here.

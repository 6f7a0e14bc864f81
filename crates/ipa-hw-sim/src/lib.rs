//! Simulated hardware manager (work in progress).

//! Scenario tests on a simulated network.

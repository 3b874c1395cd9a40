//! End-to-end test support: real servers on free loopback ports.

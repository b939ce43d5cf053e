//! Helpers for tests that run the real `zoomkeeper` binary against the in-process
//! Zoom simulator.

#![allow(dead_code)]

pub mod sim;

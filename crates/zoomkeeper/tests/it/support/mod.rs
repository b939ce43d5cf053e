//! Helpers for tests that run the real `zoomkeeper` binary against the in-process
//! Zoom simulator.

#![allow(dead_code)]

pub mod api;
pub mod process;
pub mod sim;

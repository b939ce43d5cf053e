//! The zoomkeeper service.

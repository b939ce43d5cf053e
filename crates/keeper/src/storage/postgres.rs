//! PostgreSQL implementation of [`super::Store`] (owner: storage engineer).

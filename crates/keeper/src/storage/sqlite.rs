//! SQLite implementation of [`super::Store`] (owner: storage engineer).

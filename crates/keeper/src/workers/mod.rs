//! Background work: each worker is a loop over the domain, coordinated with other
//! processes through the database.

pub mod housekeeping;
pub mod meeting_sync;
pub mod token_keeper;
pub mod webhook_delivery;

//! TODO(owner): see storage/mod.rs for the seam.

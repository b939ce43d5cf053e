//! The secrets vault (owner: storage engineer). Planned interface:
//!
//! ```ignore
//! pub struct Slot<'a> { pub table: &'static str, pub column: &'static str, pub row_id: &'a str }
//! impl Vault {
//!     pub fn seal(&self, slot: Slot<'_>, plaintext: &[u8]) -> Sealed;
//!     pub fn open(&self, slot: Slot<'_>, sealed: &Sealed) -> Result<SecretBytes, VaultError>;
//! }
//! ```

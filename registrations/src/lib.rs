//! xdhcpd-registrations: the registration store.
//!
//! A registration says who a client is (MAC and/or DHCP client identifier), which group
//! (class) it belongs to, and optionally its fixed address and options (host-name,
//! next-server / boot file, any `code -> bytes`). Operators change registrations while the
//! server runs (one at a time or by bulk import of CSV / JSON Lines); the workers read them
//! on every packet through [`Index`] without a lock or an allocation.
//!
//! - [`record`]: the record, its JSON form, validation.
//! - [`import`]: CSV and JSON Lines import / export with `file:line: field: message` errors.
//! - [`index`]: the concurrent index (client key -> registration, fixed address ->
//!   registration).
//! - [`store`]: the crash-safe files (checksummed append log + snapshot) behind the index.

pub mod import;
pub mod index;
pub mod record;
pub mod store;

pub use import::{Format, ImportError, ImportErrors};
pub use index::{Entry, Index, IndexWatch};
pub use record::{FieldError, Json, Registration, Selector};
pub use store::{Cursor, FeedChange, FeedReport, ImportReport, OpenReport, Store, StoreError};

#[cfg(test)]
mod store_tests;

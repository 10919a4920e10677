//! The cluster as the proxy sees it: node addresses, topology parsing (pure) and the
//! slot table built from it (pure); the task that keeps the table fresh is
//! [`crate::refresh`].

pub mod addr;
pub mod table;
pub mod topology;

pub use addr::NodeAddr;
